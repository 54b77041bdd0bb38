"""ConsumerState's fast constructors build from slices of its fields: they must make
exactly what `_replace` makes, or a reordered field would silently move a relay's timers."""

from __future__ import annotations

from datetime import date

import pytest

from hems_rules.core.model import ConsumerState

# A different value in every field, so a slice that is off by one cannot go unseen.
STATE = ConsumerState(
    on=False,
    switched_at=10.0,
    awaiting=False,
    controlled=True,
    available=False,
    pending_since=20.0,
    starts=3,
    day=date(2026, 6, 21),
    runtime=40.0,
    counted_at=50.0,
)


@pytest.mark.parametrize("on", [True, False])
def test_switching_is_replace_with_the_command(on: bool) -> None:
    made = STATE.switching(on, 99.0, 98.0)
    expected = STATE._replace(
        on=on, switched_at=99.0, awaiting=True, pending_since=98.0, starts=3 + int(on)
    )
    assert made == expected and type(made) is ConsumerState


def test_confirmed_is_replace_without_awaiting() -> None:
    awaiting = STATE._replace(awaiting=True)
    made = awaiting.confirmed()
    assert made == STATE and type(made) is ConsumerState


def test_counting_is_replace_with_the_runtime() -> None:
    made = STATE.counting(77.0, None)
    assert made == STATE._replace(runtime=77.0, counted_at=None)
    assert type(made) is ConsumerState


def test_the_engine_unpacks_the_fields_in_this_order() -> None:
    # decide() reads a remembered state in one unpacking: a reordered field (most are
    # bools or optional floats, which mypy cannot tell apart) would misread every relay.
    assert ConsumerState._fields == (
        "on",
        "switched_at",
        "awaiting",
        "controlled",
        "available",
        "pending_since",
        "starts",
        "day",
        "runtime",
        "counted_at",
    )
