"""Turning a payload from MQTT or HTTP into one number, or a clear reason why not."""

from __future__ import annotations

import json
import math
from typing import Any


def _walk(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise ValueError(f"no {part!r} in the payload")
    return data


def extract(payload: bytes | str, json_path: str | None) -> float | None:
    """The number at `json_path` of a JSON payload, or the raw payload as a number.

    None means the device says it has no value (JSON null, e.g. a sensor read error).
    ValueError says what is wrong with anything else.
    """
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    text = text.strip()
    if json_path is None:
        data: Any = json.loads(text) if text[:1] in '{["tfn' else text
    else:
        try:
            data = _walk(json.loads(text), json_path)
        except json.JSONDecodeError:
            raise ValueError(f"not JSON: {text[:40]!r}") from None
    if data is None:
        return None
    if isinstance(data, bool):
        return 1.0 if data else 0.0
    try:
        value = float(data)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {str(data)[:40]!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    return value
