"""Stable device numbers: consumer n is /Devices/<n>/ on the switch service and in MQTT.

Numbers follow the order of the rules when the appliance starts; a reload keeps every
surviving consumer's number (a VRM widget or Node-RED flow must not start switching a
different heater), gives new consumers the lowest free numbers, and frees removed ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from hems_rules.ruleset.rules import Consumer


class DeviceNumbers:
    def __init__(self) -> None:
        self._by_id: dict[str, int] = {}

    def sync(self, consumers: Iterable[Consumer]) -> dict[str, int]:
        ids = [c.id for c in consumers]
        kept = {i: n for i, n in self._by_id.items() if i in ids}
        used = set(kept.values())
        free = (n for n in range(len(ids) + len(used) + 1) if n not in used)
        for consumer_id in ids:
            if consumer_id not in kept:
                kept[consumer_id] = next(free)
        self._by_id = kept
        return dict(kept)

    @property
    def numbers(self) -> dict[str, int]:
        return dict(self._by_id)

    def consumer(self, number: int) -> str | None:
        for consumer_id, n in self._by_id.items():
            if n == number:
                return consumer_id
        return None
