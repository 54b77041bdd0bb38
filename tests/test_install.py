"""The GX installer into a temporary root: install twice, then uninstall."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.soak import LIMITS, PYTHON_OPTIONS

REPO = Path(__file__).parent.parent
INSTALL = REPO / "install" / "install.sh"


def install(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["sh", str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_install_is_idempotent_and_uninstall_keeps_the_rules(tmp_path: Path) -> None:
    rc = tmp_path / "data" / "rc.local"
    rc.parent.mkdir(parents=True)
    rc.write_text("#!/bin/sh\necho mine\n")
    install(tmp_path)
    app = tmp_path / "data" / "hems-rules"
    (app / "rules" / "site.yaml").write_text("site: {phases: 1}\n")  # the user's edit
    install(tmp_path)

    assert (app / "hems_rules" / "cli.py").is_file()
    for schema in ("rules.schema.json", "scenario.schema.json"):
        assert (app / "hems_rules" / schema).is_file()
        assert not (app / "hems_rules" / schema).is_symlink()
    assert (app / "rules" / "site.yaml").read_text() == "site: {phases: 1}\n"
    run = (app / "service" / "run").read_text()
    assert "exec softlimit" in run and "hems_rules.cli run --rules /data/hems-rules/rules" in run
    # The soak runs `run` as the service does.
    service = f"{' '.join(LIMITS)} \\\n    python3 {' '.join(PYTHON_OPTIONS)} -m hems_rules.cli run"
    assert service in run
    assert "export PYTHONPYCACHEPREFIX=/data/hems-rules/pycache" in run
    assert (app / "pycache").is_dir()  # where the run script keeps its firmware stamp
    subprocess.run(["sh", "-n", str(app / "service" / "run")], check=True)
    assert (
        "multilog t s25000 n4 /var/log/hems-rules" in (app / "service" / "log" / "run").read_text()
    )
    assert os.access(app / "service" / "run", os.X_OK) and os.access(rc, os.X_OK)
    hook = rc.read_text()
    assert hook.startswith("#!/bin/sh\necho mine\n")
    assert hook.count("ln -sfn /data/hems-rules/service /service/hems-rules") == 1
    assert os.readlink(tmp_path / "service" / "hems-rules") == "/data/hems-rules/service"

    install(tmp_path, "--uninstall")
    assert rc.read_text() == "#!/bin/sh\necho mine\n"
    assert not (tmp_path / "service" / "hems-rules").exists()
    assert not (app / "hems_rules").exists()
    assert (app / "rules" / "site.yaml").is_file()

    install(tmp_path, "--purge")
    assert not app.exists()


def test_the_installed_app_checks_its_rules(tmp_path: Path) -> None:
    install(tmp_path)
    app = tmp_path / "data" / "hems-rules"
    done = subprocess.run(
        [sys.executable, "-m", "hems_rules.cli", "check", str(app / "rules")],
        capture_output=True,
        text=True,
        check=False,
        cwd=app,
        env={**os.environ, "PYTHONPATH": f"{app}:{os.environ.get('PYTHONPATH', '')}"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "rules OK: 6 consumers" in done.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import hems_rules; print(hems_rules.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=app,
        env={**os.environ, "PYTHONPATH": str(app)},
    )
    assert where.stdout.startswith(str(app)), "the installed copy is what runs"


def test_installing_from_the_install_directory_itself_is_refused(tmp_path: Path) -> None:
    install(tmp_path)
    app = tmp_path / "data" / "hems-rules"
    (app / "install").mkdir()
    (app / "install" / "install.sh").write_text(INSTALL.read_text())
    done = subprocess.run(
        ["sh", str(app / "install" / "install.sh"), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2 and "unpack the bundle somewhere else" in done.stderr
    assert (app / "hems_rules" / "cli.py").is_file(), "nothing was deleted"
