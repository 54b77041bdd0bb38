"""Turning a payload from MQTT or HTTP into one number, or a clear reason why not.

A payload is anyone's bytes: it is bounded in size and nesting before it is parsed, its
numbers pass the one check of numbers.py, and every way it can be wrong ends in a
PayloadError (a ValueError), so the task that reads it never dies of it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hems_rules.numbers import MAX_CHARS as NUMBER_CHARS
from hems_rules.numbers import NumberError, checked, parse_number, too_long

# A Shelly's whole status is about 10 kB and the deepest JSON a sensor sends is a few
# levels; anything beyond these bounds is refused before it is parsed.
MAX_CHARS = 256_000
MAX_DEPTH = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class PayloadError(ValueError):
    """What is wrong with a payload, in plain words."""


def _integer(text: str) -> int:
    if len(text) > NUMBER_CHARS:
        raise too_long(text)  # before int(): Python refuses 4300 digits in its own words
    return int(text)


def load_json(text: str) -> Any:
    """JSON of bounded size and depth; PayloadError for anything else."""
    if len(text) > MAX_CHARS:
        raise PayloadError(f"longer than {MAX_CHARS // 1000} kB")
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise PayloadError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_int=_integer)
    except NumberError as err:
        raise PayloadError(str(err)) from None
    except ValueError:
        raise PayloadError(f"not JSON: {text[:40]!r}") from None


def _walk(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isascii() and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise PayloadError(f"no {part!r} in the payload")
    return data


def extract(payload: bytes | str, json_path: str | None) -> float | None:
    """The number at `json_path` of a JSON payload, or the raw payload as a number.

    None means the device says it has no value (JSON null, e.g. a sensor read error).
    A number may also come as a JSON string ("21.5"); a boolean is not a number.
    """
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    text = text.strip().removeprefix("\ufeff")
    if len(text) > MAX_CHARS:
        raise PayloadError(f"longer than {MAX_CHARS // 1000} kB")
    if json_path is not None:
        data = _walk(load_json(text), json_path)
    elif text[:1] in ('{["') or text in ("null", "true", "false"):
        data = load_json(text)
    else:
        data = text
    if data is None:
        return None
    try:
        return parse_number(data) if isinstance(data, str) else checked(data)
    except NumberError as err:
        raise PayloadError(str(err)) from None
