"""What the page draws, computed from the history: a day's chart and the live view. Pure.

The chart is downsampled to `resolution` seconds (the mean of the history's buckets;
a phone is a few hundred pixels wide, a day at 30 s is 2880 points). Each consumer's
on/off band is made of its decision events, with the reason of each stretch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from hems_rules.core.model import UNAVAILABLE, Plan, Snapshot
from hems_rules.history.recording import Recording, Value, drawn
from hems_rules.ruleset.rules import PHASES, RuleSet

RESOLUTION = 30.0

Series = list[float | None]


def _sum(columns: Sequence[Sequence[Value]], required: int = 1) -> Series:
    """Bucket-wise sum of the known values; None where fewer than `required` are known."""
    out: Series = []
    for values in zip(*columns, strict=True):
        known = [v for v in values if v is not None]
        out.append(sum(known) if len(known) >= required else None)
    return out


def _mean(values: Sequence[Value], factor: int) -> Series:
    out: Series = []
    for i in range(0, len(values), factor):
        known = [v for v in values[i : i + factor] if v is not None]
        out.append(round(sum(known) / len(known), 1) if known else None)
    return out


def _members(recording: Recording) -> list[dict[str, Any]]:
    """The consumers of the day's rules (each summary), latest names, in priority order."""
    found: dict[str, tuple[int, int, dict[str, Any]]] = {}
    for event in recording.timeline("rules"):
        for index, c in enumerate(event.value["consumers"]):
            found[c["id"]] = (int(c["priority"]), index, c)
    return [c for _, _, c in sorted(found.values(), key=lambda x: (x[0], x[1]))]


def _bands(recording: Recording, end: float) -> dict[str, list[list[Any]]]:
    """Per consumer: [start, end, state, reason, code] stretches between its decisions."""
    bands: dict[str, list[list[Any]]] = {}
    for event in recording.timeline("decision"):
        stretches = bands.setdefault(event.subject, [])
        start = max(event.t, recording.start)
        if stretches:
            stretches[-1][1] = start
            if stretches[-1][1] <= stretches[-1][0]:
                stretches.pop()
        value = event.value
        stretches.append([start, end, value["state"], value["reason"], value.get("code")])
    return {
        consumer: [[round(a, 1), round(b, 1), *rest] for a, b, *rest in stretches if b > a]
        for consumer, stretches in bands.items()
    }


def day_chart(
    recording: Recording, days: Sequence[date], resolution: float = RESOLUTION
) -> dict[str, Any]:
    """The chart of one recorded day, as the page's JSON."""
    factor = max(1, round(resolution / recording.step))
    column = recording.column
    pv = _sum(
        [column(f"sys:/Ac/{kind}/{p}/Power") for kind in ("PvOnGrid", "PvOnOutput") for p in PHASES]
        + [column("sys:/Dc/Pv/Power")]
    )
    consumption = _sum([column(f"sys:/Ac/Consumption/{p}/Power") for p in PHASES])
    surplus = _sum([column(f"plan:surplus:{p}") for p in PHASES] + [column("plan:dc")])
    known = [i for i, v in enumerate(consumption) if v is not None]
    first = known[0] // factor * factor if known else 0
    last = (known[-1] + 1) if known else 0
    end = recording.start + last * recording.step
    members = _members(recording)
    bands = _bands(recording, end)
    times = recording.times()[first:last:factor]
    return {
        "start": recording.start,
        "end": recording.start + recording.length * recording.step,
        "resolution": factor * recording.step,
        "days": [d.isoformat() for d in days],
        "t": times,
        "series": {
            name: _mean(values[first:last], factor)
            for name, values in (
                ("pv", pv),
                ("consumption", consumption),
                ("surplus", surplus),
                ("reservation", column("plan:reservation")),
                ("battery", column("sys:/Dc/Battery/Power")),
                ("soc", column("sys:/Dc/Battery/Soc")),
            )
        },
        "consumers": [
            {
                "id": c["id"],
                "name": c["name"],
                "power": _mean(column(f"draw:{c['id']}")[first:last], factor),
                "bands": bands.get(c["id"], []),
            }
            for c in members
        ],
    }


def sample(plan: Plan, snapshot: Snapshot, rules: RuleSet) -> dict[str, Any]:
    """The chart's values right now, for the live page to extend today's chart."""
    system = snapshot.system

    def total(paths: Sequence[str]) -> float | None:
        known = [v for p in paths if (v := system.get(p)) is not None]
        return round(sum(known), 1) if known else None

    surplus = (
        None
        if plan.surplus is None
        else round(sum(plan.surplus.values()) + (plan.dc_pool or 0.0), 1)
    )
    return {
        "pv": total(
            [f"/Ac/{k}/{p}/Power" for k in ("PvOnGrid", "PvOnOutput") for p in PHASES]
            + ["/Dc/Pv/Power"]
        ),
        "consumption": total([f"/Ac/Consumption/{p}/Power" for p in PHASES]),
        "surplus": surplus,
        "reservation": plan.reservation,
        "battery": system.get("/Dc/Battery/Power"),
        "soc": system.get("/Dc/Battery/Soc"),
        "consumers": {
            c.id: drawn(c, snapshot.devices.get(c.id, UNAVAILABLE)) for c in rules.consumers
        },
    }


def live(
    plan: Plan,
    snapshot: Snapshot,
    rules: RuleSet,
    t: float,
    *,
    rules_error: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the top of the page shows: the consumers, the reservation, the surplus."""
    decisions = {d.consumer: d for d in plan.decisions}
    ranked = sorted(enumerate(rules.consumers), key=lambda x: (x[1].priority, x[0]))
    consumers = []
    for _, consumer in ranked:
        decision = decisions.get(consumer.id)
        fact = snapshot.devices.get(consumer.id, UNAVAILABLE)
        consumers.append(
            {
                "id": consumer.id,
                "name": consumer.name,
                "priority": consumer.priority,
                "primary": consumer.primary,
                "phase": consumer.phase,
                "nominal": consumer.power,
                "state": decision.state if decision else "unavailable",
                "controlled": decision.controlled if decision else False,
                "reason": decision.reason if decision else "",
                "code": decision.code if decision else "",
                "runtime": decision.runtime if decision else None,  # s on today
                "power": drawn(consumer, fact),
                "auto": snapshot.auto.get(consumer.id, 1),
            }
        )
    phases = rules.site.phase_names
    return {
        "t": t,
        "mode": snapshot.settings.mode,
        "active": plan.active,
        "reservation": {
            "watts": plan.reservation,
            "state": plan.reservation_state,
            "error": plan.reservation_error,
        },
        "surplus": None
        if plan.surplus is None
        else {**{p: round(plan.surplus.get(p, 0.0), 1) for p in phases}, "DC": plan.dc_pool},
        "left": plan.left,
        "rules_error": rules_error,
        "consumers": consumers,
        "sample": sample(plan, snapshot, rules),
        **(extra or {}),
    }
