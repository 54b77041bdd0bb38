"""Python values to and from D-Bus variants, as Victron services type them."""

from __future__ import annotations

from typing import Any

from dbus_fast import Variant

Value = int | float | str | None

INVALID = Variant("ai", [])
_INT32 = range(-(2**31), 2**31)


def wrap(value: Value | bool) -> Variant:
    """None is invalid (an empty int32 array); ints that do not fit int32 become int64."""
    if value is None:
        return INVALID
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("i" if value in _INT32 else "x", value)
    if isinstance(value, float):
        return Variant("d", value)
    return Variant("s", str(value))


def unwrap(variant: Any) -> Value:
    """A variant's value; an empty array (any type) reads as invalid."""
    value = variant.value if isinstance(variant, Variant) else variant
    if isinstance(value, list):
        return None if not value else str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    return None


_BASIC = frozenset("bynqiuxtds")


def written(variant: Variant) -> Value:
    """A value sent with SetValue, as Victron services take it; ValueError otherwise.

    A basic type (a boolean counts as an int: flashmq sends JSON true as one), or invalid
    (an empty array of any type). Arrays, structs, dicts, nested variants, object paths
    and signatures are refused, as localsettings refuses them.
    """
    signature, value = variant.signature, variant.value
    if signature.startswith("a") and not value:
        return None
    if signature not in _BASIC:
        raise ValueError(f"a value of D-Bus type {signature} cannot be written")
    return int(value) if isinstance(value, bool) else value
