"""The local day: midnight to midnight by the wall clock of the GX's time zone.

A day with a daylight-saving change has 23 or 25 hours; reading times off the wall
clock of the time zone `now` carries makes both right ("20:00" is 20:00 on the wall,
not midnight plus 20 hours). Each time is computed once per day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache

DAY_MINUTES = 24 * 60


@lru_cache(maxsize=256)
def _wall(day: date, minutes: int, zone: tzinfo | None) -> float:
    """The timestamp of HH:MM on `day` (24:00: the next midnight)."""
    if minutes >= DAY_MINUTES:
        day, minutes = day + timedelta(days=1), minutes - DAY_MINUTES
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone).timestamp()


class Day:
    """The local day of a cycle: its date, and its wall-clock times as timestamps."""

    __slots__ = ("date", "start", "zone")

    def __init__(self, now: datetime) -> None:
        self.date = now.date()
        self.zone = now.tzinfo
        self.start = _wall(self.date, 0, self.zone)  # midnight

    def counted_from(self, since: float) -> float:
        """`since`, or midnight if that is later: what today's runtime counts from."""
        start = self.start
        return start if start > since else since

    def at(self, minutes: int) -> float:
        """The wall-clock time `minutes` after midnight (1440: the next midnight)."""
        return _wall(self.date, minutes, self.zone)
