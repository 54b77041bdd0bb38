#!/bin/sh
# Build dist/hems-rules-gx-<version>-<arch>.tar.gz for a GX: the app (with its example
# rules), its schema, the installer, and in lib/ the Python packages Venus OS lacks.
# dbus-fast and aiohttp come with Venus OS (v3.70+) and are not bundled. Needs PyPI; run
# it on a PC.
#   install/bundle.sh [armv7l|aarch64]...   (default: both)
#   install/bundle.sh --lib DIR             the same lib/ for the running $PYTHON into DIR
#                                           (what the Venus-stack tests run on)
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
PURE="asteval>=1.0.9,<2 aiomqtt>=2.3,<3 paho-mqtt>=2"

# lib DIR: the packages a GX lacks, installed into DIR. All of them are pure Python, so
# the same lib/ serves every architecture.
lib() {
    target=$1
    # shellcheck disable=SC2086
    "$PYTHON" -m pip install --quiet --no-deps --target "$target" $PURE
    # PyYAML has no armv7l wheel: its sdist builds as pure Python without libyaml.
    PYYAML_FORCE_LIBYAML=0 "$PYTHON" -m pip install --quiet --no-deps --no-binary pyyaml \
        --target "$target" "PyYAML>=6"
    find "$target" -name '_yaml*.so' -delete
}

if [ "${1:-}" = --lib ]; then
    lib "$2"
    exit 0
fi

VERSION=$("$PYTHON" -c "import re,sys; print(re.search(r'__version__ = \"(.*)\"', open(sys.argv[1]).read())[1])" "$SRC/hems_rules/__init__.py")
[ $# -gt 0 ] || set -- armv7l aarch64
mkdir -p "$SRC/dist"
for arch in "$@"; do
    work=$(mktemp -d)
    stage="$work/hems-rules"
    mkdir -p "$stage/lib"
    cp -R "$SRC/hems_rules" "$SRC/schema" "$SRC/install" "$stage/"
    for schema in rules scenario; do
        rm -f "$stage/hems_rules/$schema.schema.json"
        cp "$SRC/schema/$schema.schema.json" "$stage/hems_rules/$schema.schema.json"
    done
    find "$stage" -name __pycache__ -type d -exec rm -rf {} +
    lib "$stage/lib"
    tar -C "$work" -czf "$SRC/dist/hems-rules-gx-$VERSION-$arch.tar.gz" hems-rules
    rm -rf "$work"
    echo "dist/hems-rules-gx-$VERSION-$arch.tar.gz"
done
