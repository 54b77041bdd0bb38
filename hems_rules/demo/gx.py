"""A simulated GX on a private bus: com.victronenergy.system and com.victronenergy.settings.

The settings service follows localsettings' AddSettings semantics (venus-conventions.md
§2): the type comes from the default's variant, numbers have min/max, SetValue answers
-1 for a bad type or range, an existing setting keeps its value, and
ClassAndVrmInstance settings are bumped to a free instance of their class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbus_fast import Message, Variant

from hems_rules.dbus.service import INVALID_ARGS, BusService, Item, one_variant
from hems_rules.dbus.variants import Value, unwrap, wrap, written

SETTINGS_INTERFACE = "com.victronenergy.Settings"

OK, UNKNOWN_TYPE, INVALID_PATH, TYPE_DIFFERS = 0, -3, -4, -5
OUT_OF_RANGE, NOT_UNDER_SETTINGS = -7, -9
_KINDS = {"i": int, "x": int, "n": int, "q": int, "u": int, "d": float, "s": str}


class SimulatedSystem(BusService):
    """com.victronenergy.system whose values a script or scenario sets."""

    def __init__(self, address: str | None) -> None:
        super().__init__("com.victronenergy.system", address)
        self.add_mandatory(
            "dbus-systemcalc-py (simulated)", 0, "System", "data from other services"
        )

    def update(self, values: Mapping[str, Value]) -> None:
        for path, value in values.items():
            if path in self.items:
                self.set(path, value)
            else:
                self.add(path, value, kind=type(value) if value is not None else float)


class _Setting(Item):
    default: Value = None
    minimum: Value = None
    maximum: Value = None

    def in_range(self, value: Value) -> bool:
        """localsettings: numbers within min/max; min == max == 0 means no limits."""
        low, high = self.minimum, self.maximum
        if not isinstance(value, (int, float)) or low == high == 0:
            return True
        above = not isinstance(low, (int, float)) or value >= low
        below = not isinstance(high, (int, float)) or value <= high
        return above and below


class SimulatedSettings(BusService):
    """com.victronenergy.settings with AddSettings, in memory."""

    def __init__(self, address: str | None) -> None:
        super().__init__("com.victronenergy.settings", address)

    def handle_custom(self, msg: Message) -> Message | None:
        if msg.interface == SETTINGS_INTERFACE and msg.member == "AddSettings" and msg.path == "/":
            if msg.signature != "aa{sv}":
                return Message.new_error(msg, INVALID_ARGS, "AddSettings takes aa{sv}")
            replies = [self._add(dict(entry)) for entry in msg.body[0]]
            return Message.new_method_return(msg, "aa{sv}", [replies])
        setting = self.items.get(str(msg.path))
        if isinstance(setting, _Setting) and msg.member in ("GetMin", "GetMax", "GetDefault"):
            value = {"GetMin": setting.minimum, "GetMax": setting.maximum}.get(
                msg.member, setting.default
            )
            return Message.new_method_return(msg, "v", [wrap(0 if value is None else value)])
        if isinstance(setting, _Setting) and msg.member == "SetValue":
            refused = one_variant(msg)
            if refused is not None:
                return refused
            return Message.new_method_return(msg, "i", [self._write(setting, msg.body[0])])
        return None

    def _write(self, setting: _Setting, variant: Variant) -> int:
        """localsettings: the setting's own type within min/max, or -1 (invalid included)."""
        try:
            value = setting.coerce(written(variant))
        except ValueError:
            return -1
        if value is None or not setting.in_range(value):
            return -1
        self.set(setting.path, value)
        return 0

    def _add(self, entry: dict[str, Any]) -> dict[str, Variant]:
        path = entry.get("path")
        path_text = path.value if isinstance(path, Variant) else None
        if not isinstance(path_text, str):
            return {"error": Variant("i", INVALID_PATH)}
        reply = {"path": Variant("s", path_text)}
        default = entry.get("default")
        if not isinstance(default, Variant) or default.signature not in _KINDS:
            return {**reply, "error": Variant("i", UNKNOWN_TYPE)}
        if not path_text.startswith("/Settings/"):
            return {**reply, "error": Variant("i", NOT_UNDER_SETTINGS)}
        kind = _KINDS[default.signature]
        minimum = unwrap(entry["min"]) if "min" in entry else None
        maximum = unwrap(entry["max"]) if "max" in entry else None
        existing = self.items.get(path_text)
        if isinstance(existing, _Setting):
            if existing.kind is not kind:
                return {**reply, "error": Variant("i", TYPE_DIFFERS)}
            existing.default, existing.minimum, existing.maximum = default.value, minimum, maximum
            return {**reply, "error": Variant("i", OK), "value": wrap(existing.value)}
        value = default.value
        if path_text.endswith("/ClassAndVrmInstance"):
            value = self._free_instance(str(value))
        setting = _Setting(path_text, value, kind=kind, writable=True)
        setting.default, setting.minimum, setting.maximum = default.value, minimum, maximum
        if not setting.in_range(value):
            return {**reply, "error": Variant("i", OUT_OF_RANGE)}
        self.put(setting)
        return {**reply, "error": Variant("i", OK), "value": wrap(value)}

    def _free_instance(self, wanted: str) -> str:
        device_class, _, number = wanted.partition(":")
        taken = {
            str(item.value)
            for path, item in self.items.items()
            if path.endswith("/ClassAndVrmInstance")
        }
        instance = int(number) if number.isascii() and number.isdigit() else 0
        while f"{device_class}:{instance}" in taken:
            instance += 1
        return f"{device_class}:{instance}"
