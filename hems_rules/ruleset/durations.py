"""Durations as users write them: 30s, 5m, 1h, 1.5h, 250ms, or a number of seconds."""

from __future__ import annotations

import json
import re

from hems_rules.numbers import checked

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
# As many digits as make sense (up to 31,000 years in ms); the schema has the same pattern.
_PATTERN = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)(ms|s|m|h|d)?")


def parse_duration(value: object) -> float:
    """Seconds for a duration, finite and not negative; ValueError for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = checked(value)
        if seconds < 0:
            raise ValueError(f"{value!r} is negative")
        return seconds
    match = _PATTERN.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        shown = json.dumps(value) if isinstance(value, (str, bool)) else type(value).__name__
        raise ValueError(f"{shown[:40]} is not a duration like 30s, 5m, 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


def format_duration(seconds: float) -> str:
    """The shortest exact way to write a duration: 604800 -> 7d, 0.1 -> 100ms."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNITS[unit]
        if count >= 1 and count.is_integer():
            return f"{count:g}{unit}"
    return f"{seconds * 1000:g}ms"
