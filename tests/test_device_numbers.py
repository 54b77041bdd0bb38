"""Device numbers: given once, kept for good, never handed to another consumer."""

from __future__ import annotations

import pytest

from hems_rules.ruleset.rules import Consumer
from hems_rules.sinks.device_numbers import DeviceNumbers
from tests.conftest import rules_from


def consumers(*ids: str) -> list[Consumer]:
    lines = "".join(f"  - {{id: {i}, shelly: {{host: {i}.invalid}}, power: 1}}\n" for i in ids)
    return list(rules_from(f"consumers:\n{lines}").consumers)


def test_numbers_follow_the_rules_first_then_are_never_reused() -> None:
    numbers = DeviceNumbers()
    assert numbers.sync(consumers("a", "b", "c"))
    assert numbers.numbers == {"a": 0, "b": 1, "c": 2}
    assert numbers.sync(consumers("a", "c", "d"))  # b removed, d added
    assert numbers.numbers == {"a": 0, "c": 2, "d": 3}
    assert numbers.retired == {"b": 1}
    assert numbers.consumer(1) is None, "a write to b's number reaches no one"
    assert not numbers.sync(consumers("b", "a")), "b comes back to its own number"
    assert numbers.numbers == {"b": 1, "a": 0}


def test_the_map_survives_a_restart_through_its_text() -> None:
    before = DeviceNumbers()
    before.sync(consumers("a", "b"))
    before.sync(consumers("b"))
    after = DeviceNumbers()
    after.restore(before.dump())
    after.sync(consumers("c", "b"))
    assert after.numbers == {"c": 2, "b": 1}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"a": -1}', '{"a": "x"}'])
def test_an_unreadable_map_is_logged_and_numbering_starts_afresh(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    numbers = DeviceNumbers()
    numbers.restore(text)
    numbers.sync(consumers("a"))
    assert numbers.numbers == {"a": 0}
    assert "cannot be read" in caplog.text
