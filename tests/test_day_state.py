"""The day's runtime and starts survive a restart (DESIGN §5.11), on real files."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date
from pathlib import Path
from types import MappingProxyType

import pytest

from hems_rules.core.model import ConsumerState, EngineState
from hems_rules.day_state import FORMAT, Counted, DayState, read
from tests.conftest import wait_until

TODAY = date(2026, 6, 21)


def state(**runtimes: tuple[float, int]) -> EngineState:
    return EngineState(
        MappingProxyType(
            {
                consumer_id: ConsumerState(day=TODAY, runtime=runtime, starts=starts)
                for consumer_id, (runtime, starts) in runtimes.items()
            }
        )
    )


async def test_a_restart_continues_the_day_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    async with DayState(path) as day_state:
        day_state.update(state(filter=(3600.0, 2), heater=(120.5, 1)))
    async with DayState(path) as again:
        restored = again.restore(EngineState(), TODAY)
    assert restored.consumers["filter"].runtime == 3600.0
    assert restored.consumers["filter"].starts == 2
    assert restored.consumers["heater"].runtime == 120.5
    assert restored.consumers["filter"].day == TODAY


async def test_yesterdays_counts_are_not_today_s(tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    async with DayState(path) as day_state:
        day_state.update(state(filter=(3600.0, 2)))
    async with DayState(path) as again:
        restored = again.restore(EngineState(), date(2026, 6, 22))
    assert "filter" not in restored.consumers


async def test_the_restore_keeps_what_the_engine_already_knows(tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    async with DayState(path) as day_state:
        day_state.update(state(filter=(60.0, 1)))
    running = ConsumerState(on=True, switched_at=5.0, controlled=True)
    async with DayState(path) as again:
        restored = again.restore(EngineState(MappingProxyType({"filter": running})), TODAY)
    assert restored.consumers["filter"] == running._replace(day=TODAY, runtime=60.0, starts=1)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff garbage",
        b'{"format": "hems-rules day state", "version": 1, "consumers": {"x": {"runtime": -5}}}',
        b'{"format": "hems-rules day state", "version": 99, "consumers": {}}',
        b'{"consumers": {"filter": {"day": "2026-06-21", "runtime": 10, "starts": 1}}}',
        b"[1, 2, 3]",
    ],
    ids=["garbage", "bad-entry", "other-version", "foreign", "not-a-mapping"],
)
async def test_a_corrupt_or_foreign_file_is_reported_and_ignored(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "day.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        async with DayState(path) as day_state:
            assert day_state.restore(EngineState(), TODAY) == EngineState()
            day_state.update(state(filter=(10.0, 1)))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ignored, today counts from zero" in warnings[0].message
    assert read(path) == {"filter": Counted(TODAY, 10.0, 1)}  # replaced by a good one


async def test_writes_come_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    async with DayState(path, every=0.5) as day_state:
        for second in range(20):  # 20 cycles within the first interval
            day_state.update(state(filter=(float(second), 1)))
            await asyncio.sleep(0.002)
        await wait_until(lambda: day_state.writes >= 1, timeout=5)
        assert day_state.writes == 1
        assert read(path)["filter"].runtime == 19.0
        day_state.update(state(filter=(19.0, 1)))  # nothing new: nothing written
        await asyncio.sleep(0.6)
        assert day_state.writes == 1
    assert [p.name for p in tmp_path.iterdir()] == ["day.json"]  # no temporary file left


async def test_a_failing_write_is_logged_once_and_never_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing" / "day.json"
    with caplog.at_level(logging.INFO):
        async with DayState(path, every=0.05) as day_state:
            for runtime in range(5):
                day_state.update(state(filter=(float(runtime), 1)))
                await asyncio.sleep(0.1)
            path.parent.mkdir()
            await wait_until(lambda: day_state.writes == 1, timeout=5)
    failures = [r for r in caplog.records if "cannot write" in r.getMessage()]
    recoveries = [r for r in caplog.records if "available again" in r.getMessage()]
    assert len(failures) == 1 and len(recoveries) == 1
    assert json.loads(path.read_text())["format"] == FORMAT
