"""Whether one device or source works, told once per change.

As Home Assistant's coordinator does it: a failure is logged once when it starts and the
recovery once, never every retry. A `ConfigurationError` is logged as an error the user
must act on and listed in `Faults` (shown on /Hems/ConfigError) until it goes away; a
transient failure is a warning. When the kind of failure changes (say a wrong password
is fixed but the device is now unplugged) that is a new failure, logged once too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hems_rules.errors import ConfigurationError, HemsError

log = logging.getLogger(__name__)


class Faults:
    """The configuration faults present now, by who has them: /Hems/ConfigError's text."""

    def __init__(self) -> None:
        self._faults: dict[str, str] = {}
        self._listeners: list[Callable[[str], None]] = []

    @property
    def text(self) -> str:
        """One line per fault, sorted; "" when there is none."""
        return "\n".join(f"{name}: {message}" for name, message in sorted(self._faults.items()))

    def listen(self, callback: Callable[[str], None]) -> None:
        """Call `callback(text)` now and whenever the faults change."""
        self._listeners.append(callback)
        callback(self.text)

    def set(self, name: str, message: str | None) -> None:
        """`name` has this fault now (None: no longer)."""
        if self._faults.get(name) == message:
            return
        if message is None:
            del self._faults[name]
        else:
            self._faults[name] = message
        text = self.text
        for callback in self._listeners:
            callback(text)


def reason(error: BaseException) -> str:
    """What a failure means, in plain words for a Reason (no address, no internals)."""
    said = getattr(error, "reason", None)
    if isinstance(said, str) and said:
        return said
    return str(error) if isinstance(error, ConfigurationError) else "it does not answer"


class Health:
    """The state of one thing that can fail: `failed(error)` after each failure,
    `ok()` after each success. Both log only when the state changes."""

    def __init__(
        self, name: str, logger: logging.Logger = log, faults: Faults | None = None
    ) -> None:
        self.name = name
        self.failures = 0  # in a row
        self.error: BaseException | None = None  # the failure now, None while it works
        self._log = logger
        self._faults = faults
        self._told: tuple[str, ...] | None = None  # the failure last logged

    def failed(self, error: BaseException) -> bool:
        """Count a failure; True when it was logged (a new failure, or a new kind of one)."""
        self.failures += 1
        self.error = error
        config = isinstance(error, ConfigurationError)
        # The fault list is set every time, not only on a change: it is shared, and a
        # worker replaced by a reload must not leave its successor's fault cleared.
        self._set_fault(str(error) if config else None)
        told = ("configuration", str(error)) if config else ("transient",)
        if told == self._told:
            return False
        self._told = told
        if config:
            self._log.error("%s: configuration fault, the user must act: %s", self.name, error)
        else:
            # Sources map what they expect to HemsError; anything else is a bug: show
            # where it came from, once.
            self._log.warning(
                "%s unavailable: %s",
                self.name,
                error or type(error).__name__,
                exc_info=None if isinstance(error, HemsError) else error,
            )
        return True

    def ok(self) -> bool:
        """Count a success; True when it was logged (the recovery)."""
        self.failures = 0
        self.error = None
        self._set_fault(None)
        if self._told is None:
            return False
        self._told = None
        self._log.info("%s available again", self.name)
        return True

    def close(self) -> None:
        """The thing is gone (removed from the rules): its fault is no longer shown."""
        self._set_fault(None)

    def _set_fault(self, message: str | None) -> None:
        if self._faults is not None:
            self._faults.set(self.name, message)
