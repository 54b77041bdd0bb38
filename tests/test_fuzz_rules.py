"""Fuzz: hostile rule files end in located errors, within a time bound, never a traceback.

Documents are built from a good rule file whose values are replaced by hostile scalars
(NaN, infinities, huge and over-long numbers, control characters, tags, aliases), from
webs of anchors and aliases (cycles, undefined names, exponential expansion) and from
deep nesting. Whatever the loader accepts must hold only finite numbers within the
schema's ranges and no control characters, and `check` must print it safely.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.cli import _summary
from hems_rules.errors import RulesError
from hems_rules.ruleset import compile_documents
from hems_rules.ruleset.rules import HttpSource, MqttSource, RuleSet
from hems_rules.ruleset.yamldoc import parse_yaml

# Far above what any document needs on a slow machine; a hang or an expansion shows.
TIME_BOUND = 3.0
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

TEMPLATE = """\
site:
  phases: {phases}
  loop_interval: {loop_interval}
  battery_reservation: {reservation}
  continuous_inverter_power: {cip}
  dc_efficiency: {efficiency}
  mqtt: {{host: {broker}, port: {broker_port}}}
variables:
  tank: {{mqtt: {{topic: {topic}, json: {json}, stale_after: {stale}}}}}
  rod: {{http: {{url: {url}, every: {every}}}}}
consumers:
  - id: {id}
    name: {name}
    shelly: {{host: {host}, port: {port}, switch: {switch}, toggle_after: {toggle}}}
    power: {power}
    priority: {priority}
    min_on: {min_on}
    off_margin: {off_margin}
    max_starts_per_day: {starts}
    auto_when: {auto_when}
"""
GOOD = {
    "phases": "3",
    "loop_interval": "2s",
    "reservation": '"2000 - SOC * 20"',
    "cip": "4000",
    "efficiency": "0.925",
    "broker": "127.0.0.1",
    "broker_port": "1883",
    "topic": "ebus/+/tank",
    "json": "value",
    "stale": "5m",
    "url": '"http://10.0.0.7/rpc/Temperature.GetStatus?id=100"',
    "every": "10s",
    "id": "heater",
    "name": "Heater",
    "host": "10.0.0.5",
    "port": "80",
    "switch": "0",
    "toggle": "1m",
    "power": "1000",
    "priority": "40",
    "min_on": "30s",
    "off_margin": "0",
    "starts": "40",
    "auto_when": '"tank < 70 and rod < 90"',
}

_quoted = st.text(st.characters(max_codepoint=0x10FF, exclude_categories=["Cs"]), max_size=12).map(
    lambda text: '"' + "".join(f"\\x{ord(c):02x}" if ord(c) < 0x100 else c for c in text) + '"'
)
HOSTILE = st.one_of(
    st.sampled_from(
        [
            ".nan",
            ".NaN",
            ".inf",
            "-.inf",
            "+.Inf",
            "1.0e+999",
            "-1.0e+400",
            "1.0e+300",
            "9" * 400,
            "9" * 5000,
            "0x" + "f" * 2000,
            "0b" + "1" * 300,
            "0o" + "7" * 300,
            "1_0",
            "190:20:30",
            "-0",
            "~",
            "null",
            "yes",
            "off",
            "[]",
            "{}",
            "''",
            "!!float nan",
            "!!int 99999999999999999999",
            "!!binary AAAA",
            "2026-01-01",
            "!!python/object/apply:os.system [true]",
            "!!set {a}",
            "!!omap [a: 1]",
            '"\\0"',
            '"\\e[2J"',
            '"\\x85"',
            '"\\u202e"',
            '"a\\tb"',
            '"\\r"',
            "*missing",
            '"1e999"',
            '"1/0"',
            '"abs"',
            '"0**-1"',
            '"99999999999999d"',
            '"0"',
            "0",
            "-1",
            "a/#/b",
            "a+/b",
            '"' + "x" * 3000 + '"',
        ]
    ),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.6e}"),
    _quoted,
)


@st.composite
def mutated(
    draw: st.DrawFn, template: str, good: dict[str, str], hostile: st.SearchStrategy[str]
) -> str:
    """`template` filled with `good` values, one to four of them replaced by `hostile` ones."""
    values = dict(good)
    for key in draw(st.lists(st.sampled_from(sorted(good)), min_size=1, max_size=4, unique=True)):
        values[key] = draw(hostile)
    return template.format(**values)


@st.composite
def alias_webs(draw: st.DrawFn) -> str:
    """Anchors whose values refer to any anchor: earlier (expansion), itself or later."""
    count = draw(st.integers(min_value=1, max_value=20))
    fan = draw(st.integers(min_value=0, max_value=10))  # a billion laughs when > 1
    lines = []
    for index in range(count):
        earlier = st.integers(min_value=0, max_value=index - 1)
        refs = draw(st.lists(earlier, max_size=10)) if index else []
        refs += [index - 1] * fan if index else []
        if draw(st.integers(0, 9)) == 0:  # now and then itself, or a name not yet defined
            refs.append(draw(st.integers(min_value=index, max_value=count + 1)))
        items = [f"*a{ref}" for ref in refs] + ["lol"] * draw(st.integers(0, 2))
        body = f"[{', '.join(items)}]"
        if draw(st.booleans()):
            body = f"{{x: {body}, y: {{z: [1, {body}]}}}}"
        lines.append(f"k{index}: &a{index} {body}")
    if draw(st.booleans()):
        lines.append(f"consumers: *a{draw(st.integers(0, count - 1))}")
    return "\n".join(lines) + "\n"


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=1, max_value=3000))
    opens = draw(st.lists(st.sampled_from(["[", "{a: "]), min_size=depth, max_size=depth))
    closes = ["]" if o == "[" else "}" for o in reversed(opens)]
    return "consumers: " + "".join(opens) + "1" + "".join(closes) + "\n"


def numbers_in(value: Any) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in numbers_in(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [n for name in value.__dataclass_fields__ for n in numbers_in(getattr(value, name))]
    return []


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [s for name in value.__dataclass_fields__ for s in strings_in(getattr(value, name))]
    return []


def assert_sound(rules: RuleSet) -> None:
    """What the loader lets through: finite numbers within the ranges, printable text."""
    site = rules.site
    assert 0.1 <= site.loop_interval <= 600
    assert site.continuous_inverter_power is None or 0 <= site.continuous_inverter_power <= 1e6
    for consumer in rules.consumers:
        assert 0 <= consumer.power <= 1e6 and 0 <= consumer.off_margin <= 1e6
        assert 0 <= consumer.priority <= 1000
        assert all(0 <= d <= 604800 for d in (consumer.min_on, consumer.min_off))
        toggle = consumer.shelly.toggle_after if consumer.shelly is not None else None
        assert toggle is None or 1 <= toggle <= 86400
    for variable in rules.variables.values():
        source = variable.source
        assert source.stale_after is None or 1 <= source.stale_after <= 604800
        if isinstance(source, HttpSource):
            assert 1 <= source.every <= 86400
        if isinstance(source, MqttSource):
            assert "#" not in source.topic[:-1]
    for number in numbers_in(list(rules.consumers)) + numbers_in(site):
        assert math.isfinite(number) and abs(number) <= 1e15
    texts = strings_in(list(rules.consumers)) + strings_in(list(rules.variables.values()))
    assert not any(CONTROL.search(text) for text in texts)
    assert not CONTROL.search(_summary(rules).replace("\n", ""))


def load(text: str) -> None:
    """The loader's promise for one document, within the time bound."""
    started = time.monotonic()
    try:
        doc, problems = parse_yaml("fuzz.yaml", text)
        if doc is None:
            raise RulesError(problems)
        assert_sound(compile_documents([doc], problems, live=True))
    except RulesError as err:
        assert err.problems
        for problem in err.problems:
            assert problem.file == "fuzz.yaml" and problem.line >= 1 and problem.column >= 1
            assert problem.message
            assert not CONTROL.search(str(problem))
    assert time.monotonic() - started < TIME_BOUND


def test_the_template_itself_loads() -> None:
    doc, problems = parse_yaml("good.yaml", TEMPLATE.format(**GOOD))
    assert doc is not None, problems
    assert_sound(compile_documents([doc], live=True))


@FUZZ
@given(mutated(TEMPLATE, GOOD, HOSTILE))
def test_hostile_values_in_a_rule_file(text: str) -> None:
    load(text)


@FUZZ
@given(alias_webs())
def test_webs_of_anchors_and_aliases(text: str) -> None:
    load(text)


@settings(FUZZ, max_examples=30)
@given(deep_nesting())
def test_deep_nesting(text: str) -> None:
    load(text)
