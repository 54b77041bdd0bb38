"""Today's runtime and starts of each consumer, kept across a restart or a power cut.

DESIGN §5.11: the day's runtime and starts survive a restart of hems-rules. A small
JSON file holds them, written atomically (a temporary file, fsync, rename) at most once
per `every` (a minute) and on shutdown, so the GX's flash sees few writes and a power
cut loses at most the last minute. On start it is read back only for consumers whose
day is today. A file that is corrupt or not ours is reported once and ignored: the day
then counts from zero and control goes on.

Wiring (an async context manager, like every component):

    async with DayState(path) as day_state:
        controller.state = day_state.restore(controller.state, today)
        ...after each cycle: day_state.update(controller.state)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Self

from hems_rules.core.model import ConsumerState, EngineState
from hems_rules.errors import TransientError
from hems_rules.health import Health
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

FORMAT = "hems-rules day state"
VERSION = 1
EVERY = 60.0  # seconds between writes at most
_LARGEST = 1 << 20  # a day state is a few hundred bytes per consumer; more is not ours


class DayStateError(TransientError):
    """The day state file cannot be read or written."""


@dataclass(frozen=True)
class Counted:
    """What one consumer did on one local day."""

    day: date
    runtime: float  # seconds on, as the relay reported it
    starts: int


def counted(state: EngineState) -> dict[str, Counted]:
    """What an engine state says each consumer did on its current day."""
    return {
        consumer_id: Counted(remembered.day, remembered.runtime, remembered.starts)
        for consumer_id, remembered in state.consumers.items()
        if remembered.day is not None
    }


def _encode(days: Mapping[str, Counted]) -> bytes:
    consumers = {
        consumer_id: {"day": c.day.isoformat(), "runtime": round(c.runtime, 1), "starts": c.starts}
        for consumer_id, c in sorted(days.items())
    }
    return json.dumps({"format": FORMAT, "version": VERSION, "consumers": consumers}).encode()


def _decode(raw: bytes) -> dict[str, Counted]:
    """The counts in a file's bytes; DayStateError when they are not a day state of ours."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise DayStateError(f"not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DayStateError("not a hems-rules day state")
    if data.get("version") != VERSION:
        raise DayStateError(f"version {data.get('version')!r}, expected {VERSION}")
    consumers = data.get("consumers")
    if not isinstance(consumers, dict):
        raise DayStateError("no consumers")
    days: dict[str, Counted] = {}
    for consumer_id, entry in consumers.items():
        try:
            runtime, starts = entry["runtime"], entry["starts"]
            if isinstance(runtime, bool) or not isinstance(runtime, int | float):
                raise TypeError(runtime)
            if isinstance(starts, bool) or not isinstance(starts, int):
                raise TypeError(starts)
            if not 0 <= runtime <= 2 * 86400 or starts < 0:
                raise ValueError((runtime, starts))
            days[str(consumer_id)] = Counted(date.fromisoformat(entry["day"]), runtime, starts)
        except (KeyError, TypeError, ValueError) as err:
            raise DayStateError(f"{consumer_id!r}: {err!r} is not a day's count") from None
    return days


def read(path: Path) -> dict[str, Counted]:
    """The day state saved at `path`: {} when there is none; DayStateError when unusable."""
    try:
        with path.open("rb") as file:
            raw = file.read(_LARGEST + 1)
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise DayStateError(f"cannot read: {err.strerror or err}") from None
    if len(raw) > _LARGEST:
        raise DayStateError(f"larger than {_LARGEST} bytes")
    return _decode(raw)


def write(path: Path, days: Mapping[str, Counted]) -> None:
    """Replace the file at `path` atomically: after a power cut it is the old or the new."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as file:
            file.write(_encode(days))
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
    except OSError as err:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise DayStateError(f"cannot write: {err.strerror or err}") from None


class DayState:
    """The day state file of one appliance: read on enter, written while open and on exit."""

    def __init__(self, path: Path, *, every: float = EVERY) -> None:
        self.path = path
        self.every = every
        self.writes = 0  # files written since enter
        self._saved: dict[str, Counted] = {}  # what the file holds
        self._state: EngineState | None = None  # the latest engine state
        self._health = Health(f"day state {path}", log)
        self._tasks = Tasks("day state")

    async def __aenter__(self) -> Self:
        try:
            self._saved = await asyncio.to_thread(read, self.path)
        except DayStateError as err:
            log.warning("day state %s ignored, today counts from zero: %s", self.path, err)
        self._tasks.keep_running("writer", self._write_every)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        await self._write()

    def restore(self, state: EngineState, today: date) -> EngineState:
        """`state` with today's runtime and starts as saved; other days' counts are dropped."""
        restored = dict(state.consumers)
        for consumer_id, saved in self._saved.items():
            if saved.day == today:
                remembered = restored.get(consumer_id, ConsumerState())
                restored[consumer_id] = remembered._replace(
                    day=today, runtime=saved.runtime, starts=saved.starts
                )
                log.info(
                    "%s: today's %.0f s of runtime and %d starts restored",
                    consumer_id,
                    saved.runtime,
                    saved.starts,
                )
        return EngineState(MappingProxyType(restored), state.settling)

    def update(self, state: EngineState) -> None:
        """The engine state now (cheap: it is read when the file is next written)."""
        self._state = state

    async def _write_every(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._write()

    async def _write(self) -> None:
        """Write what changed since the last write; a failure is logged once, not raised."""
        if self._state is None:
            return
        days = counted(self._state)
        if days == self._saved:
            return
        try:
            await asyncio.to_thread(write, self.path, days)
        except DayStateError as err:
            self._health.failed(err)
            return
        self._health.ok()
        self.writes += 1
        self._saved = days

    def __repr__(self) -> str:
        return f"DayState({self.path!s})"
