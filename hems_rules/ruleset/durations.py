"""Durations as users write them: 30s, 5m, 1h, 1.5h, 250ms, or a number of seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
_PATTERN = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)?$")


def parse_duration(value: str | float) -> float:
    """Seconds for a duration; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration like 30s, 5m, 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    match = _PATTERN.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30s, 5m, 1h")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]
