"""The bookkeeping around decide() that the live loop and the simulator share.

It keeps the engine state and the last plan between cycles, reports which decisions
changed, and handles a rules swap: a consumer that disappears from the rules is
released like any other (switched off once unless it says keep).
"""

from __future__ import annotations

import logging
from datetime import datetime
from types import MappingProxyType

from hems_rules.core.engine import decide
from hems_rules.core.model import Decision, EngineState, Plan, Snapshot
from hems_rules.core.reasons import Code, Reason
from hems_rules.ruleset.rules import RuleSet

log = logging.getLogger(__name__)

REMOVED = Reason(Code.REMOVED)


class Controller:
    """Runs cycles and remembers what they decided."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.state = EngineState()
        self.plan: Plan | None = None
        self._orphans: list[Decision] = []

    def swap_rules(self, rules: RuleSet) -> None:
        """Use new rules from the next cycle on; the removed consumers are released."""
        old = {c.id: c for c in self.rules.consumers}
        new = {c.id: c for c in rules.consumers}
        for consumer_id in [i for i in old if i not in new]:
            remembered = self.state.consumers.get(consumer_id)
            if (
                remembered
                and remembered.controlled
                and remembered.on
                and not old[consumer_id].release_keeps
            ):
                self._orphans.append(Decision(consumer_id, "off", False, REMOVED, command=False))
        kept = MappingProxyType({i: s for i, s in self.state.consumers.items() if i in new})
        self.state = self.state._replace(consumers=kept)
        self.rules = rules

    def cycle(self, snapshot: Snapshot, now: datetime) -> tuple[Plan, list[Decision]]:
        """One decision cycle; returns the plan and the decisions that changed.

        A decision changes when its state, control or reason kind changes, not when the
        numbers in its reason move. Releases of removed consumers are delivered once.
        """
        previous = {d.consumer: d for d in self.plan.decisions} if self.plan else {}
        plan, self.state = decide(self.rules, snapshot, self.state, now)
        self.plan = plan
        changed = [
            d
            for d in plan.decisions
            if (old := previous.get(d.consumer)) is None
            or (old.state, old.code, old.controlled) != (d.state, d.code, d.controlled)
            or d.command is not None
        ]
        changed.extend(self._orphans)
        self._orphans = []
        return plan, changed
