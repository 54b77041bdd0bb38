"""The one error hierarchy of hems-rules, split by who must act (as aioshelly and Home
Assistant split theirs).

- `TransientError`: something outside us is away or confused for now (a Shelly that
  does not answer, a broker restarting). Retried without end; while it lasts the
  device or value is unavailable. Nobody needs to act.
- `ConfigurationError`: it will not get better by retrying, the user must change the
  rules or the device (a wrong password, a switch id the device does not have, broken
  rules). Said once, clearly, and shown on /Hems/ConfigError or /Hems/RulesError.

Everything else `HemsError` covers is refused input, reported where it was given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text with control characters escaped, safe for a terminal, a log line or D-Bus."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class HemsError(Exception):
    """Root of every error hems-rules raises on purpose."""


class TransientError(HemsError):
    """Retried; the device or value is unavailable until it answers again."""

    reason = "it does not answer"  # in plain words, for a consumer's Reason


class ConfigurationError(HemsError):
    """The user must act; retrying will not help. A subclass may say it in fewer words
    for a consumer's Reason as `reason`."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the rules, located as precisely as the input allows."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return printable(text)


class RulesError(ConfigurationError):
    """The rules cannot be used; every problem found is listed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class ExpressionError(HemsError):
    """An expression is not allowed or cannot be parsed."""
