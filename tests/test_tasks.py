"""Owned tasks: a worker that fails is logged and restarted, a critical one stops the app."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hems_rules.tasks import Tasks
from tests.conftest import wait_until


async def test_a_failing_worker_is_logged_with_its_traceback_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0

    async def worker() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("a bug in a source")
        await asyncio.Event().wait()

    async with Tasks("sources") as tasks:
        tasks.keep_running("mqtt", worker, min_backoff=0.01)
        await wait_until(lambda: runs == 2, what="the restart")
        assert tasks.names == ["mqtt"]
    failure = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert "sources: mqtt failed" in failure.getMessage()
    assert failure.exc_info is not None and "a bug in a source" in str(failure.exc_info[1])
    assert tasks.names == [], "closing the owner ends its tasks"


async def test_a_worker_that_returns_is_restarted_too(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0

    async def worker() -> None:
        nonlocal runs
        runs += 1

    async with Tasks("sources") as tasks:
        tasks.keep_running("http-tank", worker, min_backoff=0.01)
        await wait_until(lambda: runs >= 3, what="restarts")
    assert "http-tank ended although it must keep running" in caplog.text


async def test_a_critical_worker_that_fails_stops_the_app() -> None:
    stopped: list[str] = []

    async def worker() -> None:
        raise RuntimeError("the engine loop broke")

    async with Tasks("engine", stopped.append) as tasks:
        tasks.keep_running("engine loop", worker, critical=True)
        await wait_until(lambda: bool(stopped), what="the fatal report")
    assert stopped == ["engine: engine loop stopped"]
    assert tasks.restarts == 0


async def test_a_failing_job_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def job() -> None:
        raise ValueError("settings write refused")

    async with Tasks("switch service") as tasks:
        task = tasks.spawn(job(), name="persist-auto")
        await asyncio.gather(task, return_exceptions=True)
        await wait_until(lambda: "persist-auto failed" in caplog.text, what="the log line")


async def test_closing_ends_a_task_that_lost_its_cancellation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Python 3.11's asyncio.wait_for loses a cancellation that comes as its future
    completes (gh-86296); aiomqtt connects through it. A killed demo hung in shutdown
    when that happened: such a task is now cancelled again until it ends."""
    monkeypatch.setattr("hems_rules.tasks.RECANCEL", 0.01)
    started, lost = asyncio.Event(), asyncio.Event()

    async def worker() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            lost.set()  # goes on, as wait_for does when its future has just completed
        await asyncio.Event().wait()

    tasks = Tasks("sources")
    tasks.keep_running("mqtt", worker)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(tasks.aclose(), 5)
    assert lost.is_set() and tasks.names == []
    assert "sources: mqtt did not stop when cancelled" in caplog.text
