"""The machine's processes as Linux's /proc shows them: what a test started, and what is
left of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Process:
    pid: int
    state: str  # R, S, D, Z (a zombie: ended, not yet reaped) ...
    parent: int
    session: int
    command: str  # its command line, or (a kernel thread, a zombie) its name


def processes() -> Iterator[Process]:
    """Every process now; one that ends while it is read is left out."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 :].rsplit(")", 1)  # a name may hold ")"
        state, parent, _, session = rest.split()[:4]
        shown = command.decode(errors="replace") or name
        yield Process(int(stat.parent.name), state, int(parent), int(session), shown)
