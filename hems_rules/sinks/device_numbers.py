"""Device numbers: consumer n is /Devices/<n>/ and /SwitchableOutput/<n>/ for good.

A VRM widget, a Node-RED flow or an MQTT client that writes `/Devices/3/S2/Auto` must
never reach a different heater. So a number, once given, stays with its consumer id for
ever: across reloads and restarts (the switch service keeps the map in localsettings),
and after the consumer leaves the rules (its number is retired, not freed; the same id
coming back gets it again). New consumers get the lowest number never given, in the
order of the rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from hems_rules.ruleset.rules import Consumer

log = logging.getLogger(__name__)


class DeviceNumbers:
    def __init__(self, given: Mapping[str, int] | None = None) -> None:
        self._given: dict[str, int] = dict(given or {})  # every id ever numbered
        self._current: dict[str, int] = {}  # the consumers of the rules in use

    def restore(self, text: str) -> None:
        """Every number given before, as `dump()` wrote them; an unreadable map is logged."""
        try:
            data = json.loads(text or "{}")
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in data.items()
            ):
                raise ValueError("not a map of consumer ids to numbers")
        except ValueError as err:
            log.error("device numbers %r cannot be read (%s); numbering afresh", text[:80], err)
            data = {}
        self._given = {**data, **self._given}

    def dump(self) -> str:
        return json.dumps(self._given, sort_keys=True, separators=(",", ":"))

    def sync(self, consumers: Iterable[Consumer]) -> bool:
        """Number the consumers of these rules; True when a new number was given."""
        ids = [c.id for c in consumers]
        used = set(self._given.values())
        fresh = (n for n in range(len(used) + len(ids) + 1) if n not in used)
        added = False
        for consumer_id in ids:
            if consumer_id not in self._given:
                self._given[consumer_id] = next(fresh)
                added = True
        self._current = {i: self._given[i] for i in ids}
        return added

    @property
    def numbers(self) -> dict[str, int]:
        """The numbers of the consumers in the rules now."""
        return dict(self._current)

    @property
    def retired(self) -> dict[str, int]:
        """Numbers of consumers no longer in the rules: never given to anyone else."""
        return {i: n for i, n in self._given.items() if i not in self._current}

    def consumer(self, number: int) -> str | None:
        for consumer_id, n in self._current.items():
            if n == number:
                return consumer_id
        return None
