"""A private dbus-daemon for tests, and dbus-send as a user would run it."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path

BUSITEM = "com.victronenergy.BusItem"


class DbusDaemon:
    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory()
        config = Path(self._dir.name) / "bus.conf"
        config.write_text(
            "<!DOCTYPE busconfig PUBLIC '-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN'"
            " 'http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd'>\n"
            f"<busconfig><type>session</type><listen>unix:dir={self._dir.name}</listen>"
            "<policy context='default'><allow send_destination='*' eavesdrop='true'/>"
            "<allow eavesdrop='true'/><allow own='*'/><allow user='*'/></policy>"
            "<limit name='max_replies_per_connection'>50000</limit></busconfig>\n"
        )
        self.process = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)
        self._dir.cleanup()

    async def send(
        self, service: str, path: str, member: str, *args: str, interface: str = BUSITEM
    ) -> str:
        """dbus-send --print-reply, the way a user pokes a service from a shell."""
        process = await asyncio.create_subprocess_exec(
            "dbus-send",
            f"--bus={self.address}",
            "--print-reply",
            f"--dest={service}",
            path,
            f"{interface}.{member}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 10)
        return out.decode()
