"""The bookkeeping around decide() that the live loop and the simulator share.

It keeps the engine state and the last plan between cycles, reports which decisions
changed, and handles a rules swap: a consumer that disappears from the rules is
released like any other (switched off once unless it says keep).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
        self._planned: RuleSet | None = None  # the rules `plan` was made with
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
        last = self.plan
        plan, self.state = decide(self.rules, snapshot, self.state, now)
        pairs: Iterable[tuple[Decision | None, Decision]]
        if last is not None and self._planned is self.rules:
            # Both list the rules' consumers, in the rules' order.
            pairs = zip(last.decisions, plan.decisions, strict=True)
        else:
            previous = {d.consumer: d for d in last.decisions} if last else {}
            pairs = ((previous.get(d.consumer), d) for d in plan.decisions)
        self.plan, self._planned = plan, self.rules
        changed = [
            d
            for old, d in pairs
            if d.command is not None
            or old is None
            or old.state != d.state
            or old.why.code != d.why.code
            or old.controlled != d.controlled
        ]
        changed.extend(self._orphans)
        self._orphans = []
        return plan, changed
