"""The GX's wall clock, in its real time zone: daylight saving included.

`datetime.now().astimezone()` carries only the UTC offset in force now. The engine
reads the local day's times (midnight, a `runtime.by` deadline) off the zone a cycle's
time carries, so with a fixed offset, on a night the clocks change, every wall-clock
time computed before the change is an hour off after it. The zone comes from `TZ` (a
zone name), else from /etc/localtime (on Venus OS a link, through /data/etc, to the
tzfile of the zone set in the GX's settings). When neither can be read, the fixed
offset is all there is.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from pathlib import Path

log = logging.getLogger(__name__)

LOCALTIME = Path("/etc/localtime")
RECHECK = 60.0  # s between looks for a new zone: the user may change it while we run


class LocalZone:
    """The local time zone, read once and again only when its source has changed."""

    def __init__(
        self,
        localtime: Path = LOCALTIME,
        environ: Mapping[str, str] = os.environ,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._localtime = localtime
        self._environ = environ
        self._monotonic = monotonic
        self._checked = -math.inf
        self._source: object = None
        self._zone: tzinfo | None = None

    def zone(self) -> tzinfo | None:
        """The zone, or None when there is none to read (then the fixed offset it is)."""
        now = self._monotonic()
        if now - self._checked >= RECHECK:
            self._checked = now
            source = self._where()
            if source != self._source:
                self._source = source
                self._zone = self._load()
        return self._zone

    def now(self, timestamp: float | None = None) -> datetime:
        """The local time at `timestamp` (default: now), in the zone when there is one."""
        if timestamp is None:
            timestamp = time.time()
        zone = self.zone()
        if zone is None:
            return datetime.fromtimestamp(timestamp).astimezone()
        return datetime.fromtimestamp(timestamp, zone)

    def _where(self) -> object:
        """What the zone is read from, so that a change of it can be seen cheaply."""
        name = self._environ.get("TZ")
        if name:
            return ("TZ", name)
        try:
            stat = self._localtime.stat()
        except OSError:
            return None
        return ("file", stat.st_dev, stat.st_ino, stat.st_mtime_ns)

    def _load(self) -> tzinfo | None:
        name = self._environ.get("TZ")
        try:
            # Imported here: a Python built without zoneinfo still has the fixed offset.
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415
        except ImportError as err:
            log.warning("local time zone unknown, using the current UTC offset: %s", err)
            return None
        try:
            if name:
                # A zone name; a POSIX rule such as "CET-1CEST,M3.5.0,M10.5.0/3" is not one,
                # and is left to the C library behind the fixed offset.
                zone: tzinfo = ZoneInfo(name.removeprefix(":"))
            else:
                with self._localtime.open("rb") as tzfile:
                    zone = ZoneInfo.from_file(tzfile, key=_key(self._localtime))
        except (OSError, ValueError, ZoneInfoNotFoundError) as err:
            log.warning("local time zone unknown, using the current UTC offset: %s", err)
            return None
        log.info("local time zone: %s", zone)
        return zone


def _key(localtime: Path) -> str:
    """The zone's name, from where the link points (…/zoneinfo/Europe/Berlin)."""
    target = str(localtime.resolve())
    _, found, name = target.rpartition("zoneinfo/")
    return name.removeprefix("posix/") if found else target


_LOCAL = LocalZone()


def local_now() -> datetime:
    """Now on the GX's wall clock, in its time zone."""
    return _LOCAL.now()
