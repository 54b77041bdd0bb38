"""What differs between two rule sets, in the words a log line needs."""

from __future__ import annotations

from dataclasses import dataclass

from hems_rules.ruleset.rules import RuleSet


@dataclass(frozen=True)
class RulesChange:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    site_changed: bool = False
    variables_changed: bool = False

    def __str__(self) -> str:
        parts = [
            f"consumers {label}: {', '.join(ids)}"
            for label, ids in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if ids
        ]
        if self.site_changed:
            parts.append("site changed")
        if self.variables_changed:
            parts.append("variables changed")
        return "; ".join(parts) or "nothing changed"


def compare(old: RuleSet, new: RuleSet) -> RulesChange:
    before = {c.id: c for c in old.consumers}
    after = {c.id: c for c in new.consumers}
    return RulesChange(
        added=tuple(i for i in after if i not in before),
        removed=tuple(i for i in before if i not in after),
        changed=tuple(i for i in after if i in before and after[i] != before[i]),
        site_changed=old.site != new.site,
        variables_changed=dict(old.variables) != dict(new.variables),
    )
