"""A private dbus-daemon on a temporary socket, for the demo and the tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from hems_rules.errors import HemsError

_CONFIG = """<!DOCTYPE busconfig PUBLIC '-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN'
 'http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd'>
<busconfig>
  <type>session</type>
  <listen>unix:dir={directory}</listen>
  <policy context='default'>
    <allow send_destination='*' eavesdrop='true'/>
    <allow eavesdrop='true'/>
    <allow own='*'/>
    <allow user='*'/>
  </policy>
  <limit name='max_replies_per_connection'>50000</limit>
</busconfig>
"""


class PrivateBus:
    """`with PrivateBus() as bus:` gives `bus.address`; the daemon ends with the block."""

    def __init__(self) -> None:
        if shutil.which("dbus-daemon") is None:
            raise HemsError("dbus-daemon is not installed (Debian: apt-get install dbus)")
        self._dir = tempfile.TemporaryDirectory(prefix="hems-bus-")
        config = Path(self._dir.name) / "bus.conf"
        config.write_text(_CONFIG.format(directory=self._dir.name))
        self.process = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()
        if not self.address:
            self.stop()
            raise HemsError("dbus-daemon did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)
        self._dir.cleanup()

    def __enter__(self) -> PrivateBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
