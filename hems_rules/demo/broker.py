"""A real mosquitto on loopback for the demo and the tests, restartable on the same port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from hems_rules.errors import HemsError


def mosquitto() -> str | None:
    """The mosquitto binary, if installed (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    def __init__(self, directory: Path, *, anonymous: bool = True) -> None:
        binary = mosquitto()
        if binary is None:
            raise HemsError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\npersistence false\n"
            # An empty password file refuses every login; `user root` lets mosquitto,
            # started as root, still read it from a private directory.
            + ("allow_anonymous true\n" if anonymous else f"password_file {directory / 'none'}\n")
            + ("" if anonymous else "user root\n")
        )
        (directory / "none").write_text("")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None
