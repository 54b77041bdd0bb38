#!/bin/sh
# The test suite on the GX's own stack (Venus OS v3.70): Python 3.12, dbus-fast 2.21.1 and
# aiohttp 3.9.5 as Venus OS ships them, every other package as `make gx-bundle` bundles
# it (lib/ on PYTHONPATH, the app itself not pip-installed), as the installer runs it.
# Anything that needs a newer API fails here. Then a one-minute fault soak (tests/soak.py)
# of `run` under the installer's softlimit. `make gx-stack`, part of `make test`;
# with SOAK=10m (`make soak`) only the soak, that long.
set -eu
cd "$(dirname "$0")/.."
VENV=.venv-gx
VENUS="dbus-fast==2.21.1 aiohttp==3.9.5"

python312() {
    for candidate in "${GX_PYTHON:-}" python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12 \
        "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12; do
        [ -n "$candidate" ] || continue
        "$candidate" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 12)
print(sys.executable)' 2>/dev/null && return 0
    done
    return 1
}

if ! PY=$(python312); then
    echo "################################################################################"
    echo "# gx-stack SKIPPED: no Python 3.12 with venv on this machine (set GX_PYTHON)."
    echo "# The code is NOT checked against the GX's Python, dbus-fast and aiohttp."
    echo "################################################################################"
    exit 0
fi

key=$(cat install/bundle.sh tests/gx_stack.sh pyproject.toml | cksum)
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$key" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    tools=$("$VENV/bin/python" -c 'import tomllib
dev = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"]
print(" ".join(d for d in dev if d.startswith(("pytest", "hypothesis"))))')
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet --only-binary dbus-fast,aiohttp $VENUS $tools
    PYTHON="$VENV/bin/python" install/bundle.sh --lib "$VENV/gx-lib"
    echo "$key" > "$VENV/.installed"
fi

export PYTHONPATH="$PWD/$VENV/gx-lib:$PWD"
"$VENV/bin/python" - <<'PY'
import sys
from importlib.metadata import version

import yaml

names = ["dbus-fast", "aiohttp", "aiomqtt", "paho-mqtt", "asteval"]
found = ", ".join(f"{n} {version(n)}" for n in names)
libyaml = "libyaml" if getattr(yaml, "__with_libyaml__", False) else "pure Python"
print(f"gx-stack: Python {sys.version.split()[0]}, {found}, PyYAML {yaml.__version__} ({libyaml})")
PY
if [ -z "${SOAK:-}" ]; then
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
fi
exec "$VENV/bin/python" -m tests.soak --duration "${SOAK:-60s}"
