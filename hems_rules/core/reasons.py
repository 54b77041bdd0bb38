"""Why a consumer is in its state: a typed code plus the numbers, text only when read.

A cycle decides for every consumer, but its reason is read far less often (when it
changes, or when a status page or D-Bus client asks). So a decision carries a `Reason`
(a code and the rounded numbers behind it) and the plain words are made on demand,
once per distinct reason.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple


class Code(StrEnum):
    """The kind of a decision. A change of code (not of its numbers) is a new decision."""

    ON = "on"
    NO_SURPLUS = "no_surplus"
    MIN_ON = "min_on"
    MIN_OFF = "min_off"
    ON_DELAY = "on_delay"
    OFF_DELAY = "off_delay"
    STARTS_CAP = "starts_cap"
    RESERVATION_UNKNOWN = "reservation_unknown"
    INVERTER_LIMIT = "inverter_limit"
    SHED = "shed"
    SURPLUS_UNKNOWN = "surplus_unknown"
    SETTLING = "settling"
    RELEASED = "released"
    NOT_CONTROLLED = "not_controlled"
    UNAVAILABLE = "unavailable"
    REMOVED = "removed"
    DUE = "due"  # runtime.min: running whatever the surplus to finish by its deadline
    RUNTIME_MAX = "runtime_max"
    # Why a consumer is not under control (the argument of RELEASED / NOT_CONTROLLED).
    MODE_OFF = "mode_off"
    AUTO_OFF = "auto_off"
    AUTO_WHEN_FALSE = "auto_when_false"
    AUTO_WHEN_ERROR = "auto_when_error"
    # Notes on another reason, in parentheses.
    RELAY = "relay"  # what a relay's report revealed this cycle
    DUE_NOTE = "due_note"  # due, but something stops it
    MISSED = "missed"  # the deadline passed before runtime.min was reached


class Reason(NamedTuple):
    """A code, the numbers of its sentence, and notes added in parentheses."""

    code: Code
    args: tuple[Any, ...] = ()
    notes: tuple[Reason, ...] = ()

    @property
    def text(self) -> str:
        return _text(self)


def _timer(code: Code) -> Callable[[float], Reason]:
    """The reasons of one min_on / min_off kind, by the seconds left: the same few, made
    once each (every consumer a timer holds needs one in every cycle)."""
    made: dict[int, Reason] = {}  # by round(left), which fixes seconds(left)

    def reason(left: float) -> Reason:
        rounded = round(left)
        try:
            return made[rounded]  # not get(): a hit is the rule, and [] costs less
        except KeyError:
            if len(made) >= 4096:
                made.clear()
            known = made[rounded] = Reason(code, (seconds(left),))
            return known

    return reason


HELD_ON = _timer(Code.MIN_ON)
HELD_OFF = _timer(Code.MIN_OFF)


def seconds(value: float) -> int:
    """Times left in reasons are whole seconds, at least 1 while anything is left."""
    whole = round(value)
    return whole if whole > 1 else 1  # not max(): called for most consumers in every cycle


def _w(value: float) -> str:
    return f"{round(value):d} W"


def _left(left: float, reserved: float) -> str:
    """What remains after a consumer, against the bar that applies to it."""
    rest = left - reserved
    magnitude, short = round(abs(rest)), rest < 0
    word = "short" if short else "left"
    if reserved <= 0:
        return f"{magnitude:d} W {word}"
    above = "of" if short else "above"
    return f"{magnitude:d} W {word} {above} the {_w(reserved)} battery reservation"


def _names(ids: tuple[str, ...]) -> str:
    """a, b and c"""
    return ids[0] if len(ids) == 1 else f"{', '.join(ids[:-1])} and {ids[-1]}"


def span(value: float) -> str:
    """A duration as people say it: 45 s, 40 min, 6 h, 1 h 40 min."""
    if value < 59.5:
        return f"{max(0, round(value))} s"
    hours, minutes = divmod(round(value / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _on(on: bool) -> str:
    return "on" if on else "off"


def _sentence(code: Code, a: tuple[Any, ...]) -> str:
    match code:
        case Code.ON:  # W it draws, W left after it, W of its bar
            return f"on: {_w(a[0])}, {_left(a[1], a[2])}"
        case Code.NO_SURPLUS:  # running?, W it draws or needs, W margin, W left, W of its bar
            running, power, margin, left, reserved = a
            if running:
                return f"off: draws {_w(power)}, {_left(left, reserved)}"
            extra = f" + {_w(margin)} margin" if margin else ""
            return f"off: needs {_w(power)}{extra}, {_left(left, reserved)}"
        case Code.MIN_ON:
            return f"on: held by min_on, {a[0]} s left"
        case Code.MIN_OFF:
            return f"off: held by min_off, {a[0]} s left"
        case Code.ON_DELAY:
            return f"off: surplus for {a[0]} s of the {a[1]} s on_delay"
        case Code.OFF_DELAY:
            return f"on: deficit for {a[0]} s of the {a[1]} s off_delay"
        case Code.STARTS_CAP:
            return f"off: {a[0]} starts today, the daily maximum"
        case Code.RESERVATION_UNKNOWN:
            return f"off: battery reservation unknown, failing closed ({a[0]})"
        case Code.INVERTER_LIMIT:
            return f"off: {_w(a[0])} more would exceed the continuous inverter power on {a[1]}"
        case Code.SHED:
            return f"off: shed, {a[0]} would exceed the continuous inverter power"
        case Code.SURPLUS_UNKNOWN:
            on, held, why = a
            if held:
                return f"{_on(on)}: held while the surplus is unknown ({why})"
            return f"off: surplus unknown ({why})"
        case Code.SETTLING:
            on, names, left = a
            return f"{_on(on)}: waiting for the meter to show {_names(names)} ({left} s at most)"
        case Code.RELEASED:
            switched, why = a
            if switched:
                return f"released, switched off: {why.text}"
            return f"not controlled: {why.text}"
        case Code.NOT_CONTROLLED:
            return f"not controlled: {a[0].text}"
        case Code.UNAVAILABLE:
            return f"unavailable: {a[0]}"
        case Code.REMOVED:
            return "released, switched off: removed from the rules"
        case Code.MODE_OFF:
            return "Mode is 0"
        case Code.AUTO_OFF:
            return "Auto is 0"
        case Code.AUTO_WHEN_FALSE:
            return f"auto_when {a[0]!r} is false"
        case Code.AUTO_WHEN_ERROR:
            return f"auto_when {a[0]!r}: {a[1]}"
        case Code.DUE:
            return f"on: {_sentence(Code.DUE_NOTE, a)}"
        case Code.DUE_NOTE:
            return f"due, {span(a[0])} of its {span(a[1])} left before {a[2]}"
        case Code.RUNTIME_MAX:
            return f"off: ran its {span(a[0])} daily maximum"
        case Code.MISSED:
            return f"missed {span(a[0])} of its {span(a[1])} before {a[2]}"
        case Code.RELAY:
            return f"the relay {a[0]}"
    raise AssertionError(code)


@lru_cache(maxsize=4096)
def _text(reason: Reason) -> str:
    words = _sentence(reason.code, reason.args)
    return words + "".join(f" ({note.text})" for note in reason.notes)
