"""The one error hierarchy of hems-rules.

Callers catch what they can handle: a rules problem is the user's to fix, an expression
problem fails closed, a device problem makes one device unavailable.
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


class RulesError(HemsError):
    """The rules cannot be used; every problem found is listed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class ExpressionError(HemsError):
    """An expression is not allowed or cannot be parsed."""
