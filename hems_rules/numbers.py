"""Numbers from outside: one check for rules, scenarios, payloads and D-Bus readings.

Whatever the format writes, a number hems-rules accepts is finite and within
±LIMIT, and a boolean is never a number. Each format parses its own syntax (YAML in
ruleset/yamldoc.py, JSON and plain text here) and then calls `checked`, so NaN,
infinity, a 5000-digit integer or `true` never reach the engine, and the message for
each is the same everywhere.
"""

from __future__ import annotations

import json
import math
import re

# Above 2**53 (about 9e15) a float no longer holds every integer; no power, duration,
# count or reading hems-rules deals with comes near 1e15.
LIMIT = 1e15
# Enough for any number written in full (1e15 with 17 decimals is 34 characters); what
# is longer is refused before Python converts it (int() of 5000 digits raises).
MAX_CHARS = 40
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class NumberError(ValueError):
    """Not a number hems-rules accepts; the message says why in plain words."""


def _show(value: object) -> str:
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = type(value).__name__
    return shown if len(shown) <= 40 else shown[:37] + "..."


def too_long(text: str) -> NumberError:
    return NumberError(f"{text[:12]}... ({len(text)} characters) is too long for a number")


def checked(value: object) -> float:
    """`value` as a float if it is a finite number within ±LIMIT; NumberError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NumberError(f"{_show(value)} is not a number")
    if isinstance(value, int) and abs(value) > LIMIT:
        raise NumberError(f"a number beyond ±{LIMIT:.0e} is out of range")
    result = float(value)
    if not math.isfinite(result):
        raise NumberError(f"{result} is not a finite number")
    if abs(result) > LIMIT:
        raise NumberError(f"{result:g} is beyond ±{LIMIT:.0e}")
    return result


def parse_number(text: str) -> float:
    """A number written as plain decimal text (`21.5`, `-3`, `1e3`); NumberError otherwise.

    Stricter than float(): no `1_0`, no `nan`, no `infinity`, no surrounding junk.
    """
    text = text.strip()
    if len(text) > MAX_CHARS:
        raise too_long(text)
    if not _DECIMAL.fullmatch(text):
        raise NumberError(f"{_show(text)} is not a number")
    return checked(float(text))


def number(value: object) -> float | None:
    """A reading as a float; None for invalid, text, NaN or anything out of range."""
    try:
        return checked(value)
    except NumberError:
        return None
