"""Readings as numbers: what every source and the simulator agree a value is."""

from __future__ import annotations


def number(value: object) -> float | None:
    """A reading as a float; None for invalid, text or anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
