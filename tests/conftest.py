"""Shared test helpers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from hems_rules.ruleset import RuleSet, compile_documents
from hems_rules.ruleset.yamldoc import parse_yaml
from tests.bus import DbusDaemon

# `make test` (and so CI) runs the same examples every time: a property that fails must
# fail for everyone, not on one CI run in ten. HYPOTHESIS_PROFILE=explore searches anew
# (with the example database), which is how new counterexamples are found and kept.
settings.register_profile("default", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


async def wait_until(
    condition: Callable[[], bool], timeout: float = 5.0, what: str | Callable[[], str] = ""
) -> None:
    """Wait for a condition, polling the event loop; fail with `what` after `timeout` s.

    `what` may be a function, to describe the failure with what is known at that moment.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said or condition}")
        await asyncio.sleep(0.01)


def rules_from(text: str, file: str = "test.yaml") -> RuleSet:
    """A RuleSet from YAML text, through the real loader."""
    doc, problems = parse_yaml(file, text)
    assert doc is not None, problems
    return compile_documents([doc], problems)


@pytest.fixture
def dbus_daemon() -> Iterator[DbusDaemon]:
    daemon = DbusDaemon()
    yield daemon
    daemon.stop()
