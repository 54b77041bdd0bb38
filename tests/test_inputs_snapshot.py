"""Inputs reuses the parts of its last snapshot that did not change, and that changes nothing.

After any sequence of setters, rules swaps and clock moves, a snapshot equals one built
from scratch out of the stored values, variables that turned stale (or fresh again)
included; and while Inputs says the last snapshot's variables hold (the simulator's
plant then reuses the whole snapshot), they are what a snapshot would show.
"""

from __future__ import annotations

from dataclasses import fields
from types import MappingProxyType
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hems_rules.core.inputs import Inputs
from hems_rules.core.model import UNAVAILABLE, DeviceFact, Snapshot
from hems_rules.ruleset.rules import RuleSet
from tests.conftest import rules_from

RULES = """\
site: {{phases: 1}}
variables:
  tank: {{mqtt: {{topic: t/tank, stale_after: 30}}}}
  rod: {{mqtt: {{topic: t/rod, stale_after: 5}}}}
  {extra}: {{mqtt: {{topic: t/x}}}}
consumers:
  - {{id: a, shelly: {{host: a.invalid}}, power: 500}}
  - {{id: {other}, shelly: {{host: b.invalid}}, power: 900}}
"""
RULESETS = [
    rules_from(RULES.format(extra="outside", other="b")),
    rules_from(RULES.format(extra="other", other="c")),
]
PATHS = ["/Ac/Consumption/L1/Power", "/Ac/PvOnGrid/L1/Power", "/ActiveBmsService"]
VALUES = st.sampled_from([None, 0.0, 150.0, 150, 2000.5, "com.victronenergy.battery.x"])


def from_scratch(inputs: Inputs, now: float, extra: dict[str, float]) -> Snapshot:
    """What a snapshot shows, built anew from what Inputs stores."""
    system = {k: v for k, v in inputs.system.items() if not isinstance(v, str)} | extra
    names = set(inputs.rules.variables) | set(inputs._variables)
    return Snapshot(
        system=MappingProxyType(system),
        system_present=inputs.system_present,
        settings=inputs.settings,
        variables=MappingProxyType({n: inputs.variable(n, now) for n in names}),
        auto=MappingProxyType(dict(inputs.auto)),
        devices=MappingProxyType(
            {c.id: inputs.devices.get(c.id, UNAVAILABLE) for c in inputs.rules.consumers}
        ),
        max_charge_current=inputs.max_charge_current,
        max_charge_voltage=inputs.max_charge_voltage,
        hub4_mode=inputs.hub4_mode,
        names=MappingProxyType({i: n for i, n in inputs.names.items() if n}),
    )


OPERATIONS = st.one_of(
    st.tuples(st.just("system"), st.none() | st.dictionaries(st.sampled_from(PATHS), VALUES)),
    st.tuples(
        st.just("variable"),
        st.sampled_from(["tank", "rod", "outside", "other", "unknown"]),
        st.sampled_from([None, 40.0, 55.0]),
        st.sampled_from([0.0, 1.0, 2.0, 4.0, 29.0]),  # how long ago, at the clock's time
    ),
    st.tuples(st.just("device"), st.sampled_from("abc"), st.booleans(), st.booleans()),
    st.tuples(st.just("auto"), st.sampled_from("abc"), st.sampled_from([0, 1])),
    st.tuples(st.just("name"), st.sampled_from("abc"), st.sampled_from(["", "Tank"])),
    st.tuples(st.just("rules"), st.sampled_from([0, 1])),
    st.tuples(st.just("clock"), st.sampled_from([-3.0, 0.0, 0.5, 3.0, 5.0, 26.0, 31.0])),
    st.tuples(st.just("snapshot"), st.sampled_from([{}, {"/Ac/Consumption/L1/Power": 500.0}])),
)


def run(inputs: Inputs, operation: tuple[Any, ...], now: float) -> float:
    """Apply one operation; the clock after it."""
    kind, *args = operation
    if kind == "system":
        inputs.update_system(args[0])
    elif kind == "variable":
        name, value, ago = args
        inputs.set_variable(name, value, now - ago)
    elif kind == "device":
        consumer, available, on = args
        inputs.set_device(consumer, DeviceFact(available=available, on=on and available))
    elif kind == "auto":
        inputs.set_auto(*args)
    elif kind == "name":
        inputs.set_name(*args)
    elif kind == "rules":
        inputs.rules = RULESETS[args[0]]
    elif kind == "clock":
        return now + float(args[0])
    else:
        extra = args[0]
        assert inputs.snapshot(now, extra) == from_scratch(inputs, now, extra)
    return now


@settings(max_examples=300, deadline=None)
@given(st.lists(OPERATIONS, max_size=40))
@example(  # a reading of the same value, but older: it turns stale sooner
    [("variable", "tank", 40.0, 0.0), ("variable", "tank", 40.0, 29.0), ("clock", 3.0)]
)
@example(  # stale, then the same value again: fresh
    [("variable", "rod", 40.0, 0.0), ("clock", 26.0), ("variable", "rod", 40.0, 0.0)]
)
def test_a_snapshot_equals_one_built_from_scratch(operations: list[tuple[Any, ...]]) -> None:
    rules: RuleSet = RULESETS[0]
    inputs = Inputs(rules)
    now = 100.0
    last = inputs.snapshot(now)
    for operation in operations:
        now = run(inputs, operation, now)
        if inputs.variables_hold(now):
            assert last.variables == from_scratch(inputs, now, {}).variables
        last = inputs.snapshot(now)
        assert last == from_scratch(inputs, now, {})


def test_a_snapshot_is_made_as_its_class_would() -> None:
    """Inputs fills a Snapshot's __dict__ instead of calling its __init__ (for speed):
    that holds only while the class checks nothing and keeps its fields in __dict__."""
    assert not hasattr(Snapshot, "__post_init__")
    assert "__slots__" not in vars(Snapshot)
    snapshot = Inputs(RULESETS[0]).snapshot(0.0)
    assert list(vars(snapshot)) == [f.name for f in fields(Snapshot)]
    assert snapshot == Snapshot(**vars(snapshot))
