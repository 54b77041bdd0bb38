"""The history: buckets, the SQLite store, and the recorder on real files, broken ones included."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from hems_rules.history.recorder import Recorder
from hems_rules.history.recording import Batch, Event, Recording, local_day
from hems_rules.history.sampler import MAX_HOLD, Sampler
from hems_rules.history.store import HistoryStore
from hems_rules.ruleset.rules import HistoryConfig
from tests.conftest import wait_until
from tests.history_rig import Day


def test_a_bucket_holds_the_time_weighted_mean() -> None:
    sampler = Sampler(step=5.0)
    sampler.add(100.0, {"pv": 1000.0})
    sampler.add(104.0, {"pv": 2000.0})  # 1000 W held for 4 s
    sampler.add(106.0, {"pv": None})  # 2000 W for 1 s in bucket 20, 1 s in bucket 21
    sampler.add(110.0, {"pv": 0.0})
    batch = sampler.take()
    assert batch is not None
    assert batch.first == 20
    assert batch.columns["pv"] == [1200, 2000]  # bucket 21: only the known second counts


def test_a_long_gap_stays_unknown_and_a_clock_going_back_starts_afresh() -> None:
    sampler = Sampler(step=5.0)
    sampler.add(0.0, {"pv": 500.0})
    sampler.add(MAX_HOLD + 10, {"pv": 700.0})  # the gap is not filled with 500 W
    sampler.add(MAX_HOLD + 12, {"pv": 900.0})  # 700 W for 2 s in bucket 62
    sampler.add(3.0, {"pv": 100.0})  # NTP set the clock back: 900 W is not held
    sampler.add(4.0, {"pv": 100.0})
    batch = sampler.take(everything=True)
    assert batch is not None
    known = {i + batch.first: v for i, v in enumerate(batch.columns["pv"]) if v is not None}
    assert known == {0: 100, int((MAX_HOLD + 10) // 5): 700}


def test_the_store_keeps_batches_and_events_and_the_state_before_a_day(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    store.open()
    step = 5.0
    first = int(Day().start.timestamp() // step)
    t0 = first * step
    store.write(
        [
            Batch(step, first - 10, {"pv": [1.0] * 10}, [Event(t0 - 20, "auto", "pump", 0)]),
            Batch(step, first, {"pv": [2.0, None, 3.5]}, [Event(t0 + 1, "auto", "pump", 1)]),
        ]
    )
    recording = store.read(t0, t0 + 15, step)
    assert recording.column("pv") == [2.0, None, 3.5]
    assert recording.column("never") == [None, None, None]
    assert [(e.subject, e.value) for e in recording.before] == [("pump", 0)]
    assert [(e.subject, e.value) for e in recording.events] == [("pump", 1)]
    assert store.days() == [local_day(t0)]
    store.close()
    assert (tmp_path / "history.db").exists()
    assert (
        not (tmp_path / "history.db-wal").exists()
        or (tmp_path / "history.db-wal").stat().st_size == 0
    )


def test_retention_drops_old_days_but_keeps_the_state_they_end_in(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path, days=2)
    store.open()
    now = Day().start.timestamp()
    old, recent = now - 5 * 86400, now - 3600
    store.write(
        [
            Batch(5.0, int(old // 5), {"pv": [1.0] * 100}, [Event(old, "auto", "pump", 0)]),
            Batch(5.0, int(old // 5) + 200, {}, [Event(old + 1000, "auto", "pump", 1)]),
            Batch(5.0, int(recent // 5), {"pv": [2.0] * 10}),
        ]
    )
    store.prune(now)
    assert store.days() == [local_day(recent)]
    recording = store.read(recent, now, 5.0)
    assert [(e.subject, e.value) for e in recording.before] == [("pump", 1)]


def test_the_size_stays_under_its_bound(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path, days=365, max_bytes=400_000)
    store.open()
    now = Day().start.timestamp()
    noisy: list[list[float | None]] = [
        [float((i * 7919) % 5000) for i in range(k, k + 12)] for k in range(40)
    ]
    for day in range(30, 0, -1):
        t = now - day * 86400
        batches = [
            Batch(5.0, int(t // 5) + 12 * b, {f"s{k}": noisy[(b + k) % 40] for k in range(20)})
            for b in range(0, 300)
        ]
        store.write(batches)
        store.prune(t)
    assert store.size() <= 400_000
    assert store.days()[-1] == local_day(now - 86400)
    assert len(store.days()) < 30


async def test_recorded_cycles_come_back_by_day_with_their_reasons(tmp_path: Path) -> None:
    day = Day()
    config = HistoryConfig(path=str(tmp_path / "history"))
    async with Recorder(config, day.rules, flush_every=3600) as recorder:
        for _ in range(30):
            recorder.publish(day.cycle())
        day.pv = 3500.0  # the pump and the heater start
        for _ in range(60):
            recorder.publish(day.cycle())
        await recorder.flush()
        written = await recorder.size()
        day.pv = 0.0
        for _ in range(30):
            recorder.publish(day.cycle())  # not flushed: still read back
        recording = await recorder.read(day.start.date())
    assert written > 0
    times = recording.times()
    pv = recording.column("sys:/Ac/PvOnGrid/L1/Power")
    heater = recording.column("draw:heater")
    at = {t: (p, h) for t, p, h in zip(times, pv, heater, strict=True) if p is not None}
    assert 3500 in [p for p, _ in at.values()] and 0 in [p for p, _ in at.values()]
    assert max(h or 0 for _, h in at.values()) == 1000
    decisions = [(e.subject, e.value["state"]) for e in recording.events if e.kind == "decision"]
    assert ("heater", "on") in decisions and ("heater", "off") in decisions
    reasons = [e.value["reason"] for e in recording.events if e.subject == "heater"]
    assert all(reasons)
    assert [e.kind for e in recording.events][:1] == ["rules"]
    # Closing wrote everything: a new recorder reads the same day from the file.
    async with Recorder(config, day.rules) as again:
        reread = await again.read(day.start.date())
        assert await again.days() == [day.start.date()]
    for before, after in zip(
        recording.column("draw:heater"), reread.column("draw:heater"), strict=True
    ):
        assert before is None or after == before  # plus the last bucket, finished on close
    assert len(reread.events) == len(recording.events)


async def test_a_corrupt_store_is_set_aside_and_recording_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "history.db").write_bytes(b"this is not a database" * 100)
    day = Day()
    async with Recorder(HistoryConfig(path=str(tmp_path)), day.rules) as recorder:
        for _ in range(20):
            recorder.publish(day.cycle())
        await recorder.flush()
        assert recorder.failing is None
    assert "moved to" in caplog.text
    assert (tmp_path / "history.db.corrupt").read_bytes().startswith(b"this is not")
    store = HistoryStore(tmp_path)
    store.open(create=False)
    assert store.days() == [day.start.date()]


async def test_a_store_removed_while_running_is_started_anew(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    day = Day()
    async with Recorder(HistoryConfig(path=str(tmp_path)), day.rules) as recorder:
        recorder.publish(day.cycle())
        await recorder.flush()
        for name in ("history.db", "history.db-wal", "history.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)  # a user cleaning up /data
        for _ in range(20):
            recorder.publish(day.cycle())
        await recorder.flush()
        assert recorder.failing is None
    assert "was removed, starting anew" in caplog.text
    store = HistoryStore(tmp_path)
    store.open(create=False)
    assert store.days() == [day.start.date()]


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real small file system of its own, where the machine lets us mount one."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


async def test_a_read_only_store_is_logged_once_and_recording_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    day = Day()
    with tmpfs(tmp_path / "ro", "4m") as place:
        day.pv = 3500.0
        async with Recorder(HistoryConfig(path=str(place)), day.rules) as recorder:
            for _ in range(10):
                recorder.publish(day.cycle())
        day.pv = 0.0
        remount(place, "ro")  # as Linux does to a file system with errors
        caplog.clear()
        with caplog.at_level(logging.INFO, "hems_rules.history"):
            async with Recorder(HistoryConfig(path=str(place)), day.rules) as recorder:
                for _ in range(3):
                    for _ in range(10):
                        recorder.publish(day.cycle())
                    await recorder.flush()
                assert recorder.failing is not None
                failures = [r for r in caplog.records if "cannot be written" in r.message]
                assert len(failures) == 1
                # The stored day and what could not be written are both there for the page.
                assert await recorder.days() == [day.start.date()]
                recording = await recorder.read(day.start.date())
                pv = [v for v in recording.column("sys:/Ac/PvOnGrid/L1/Power") if v is not None]
                assert 3500 in pv and pv.count(0) >= 5
                remount(place, "rw")
                await recorder.flush()
                assert not recorder.failing
                assert "written again" in caplog.text
        store = HistoryStore(place)
        store.open()
        start, end = day.start.timestamp(), day.start.timestamp() + day.t + 10
        recording = store.read(start, end, 5.0)
        known = [v for v in recording.column("sys:/Ac/PvOnGrid/L1/Power") if v is not None]
        assert len(known) >= 6  # the cycles of the read-only time were written afterwards
        store.close()


async def test_a_store_that_cannot_be_created_leaves_control_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    day = Day()
    with tmpfs(tmp_path / "ro", "1m") as place:
        remount(place, "ro")
        async with Recorder(HistoryConfig(path=str(place / "history")), day.rules) as recorder:
            for _ in range(5):
                recorder.publish(day.cycle())
            await recorder.flush()
            assert recorder.failing is not None
            recording = await recorder.read(day.start.date())
            assert any(v is not None for v in recording.column("on:heater"))
    assert caplog.text.count("cannot be written") == 1


FULL_DISK_CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, resource, signal, sys
    from hems_rules.history.recorder import Recorder
    from hems_rules.ruleset.rules import HistoryConfig
    from tests.history_rig import Day

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as a full disk
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    async def main():
        day = Day()
        day.pv = 2500.0
        cycles = 0
        async with Recorder(HistoryConfig(path=sys.argv[1]), day.rules) as recorder:
            for _ in range(40):
                for _ in range(300):
                    recorder.publish(day.cycle())
                    day.pv = 2500.0 + (cycles * 7919) % 997
                    cycles += 1
                await recorder.flush()
            failing = recorder.failing
        print(json.dumps({"cycles": cycles, "failing": failing}))

    asyncio.run(main())
    """
)


def test_a_full_disk_is_logged_once_and_control_goes_on(tmp_path: Path) -> None:
    """The file-size limit makes every write past 48 kB fail as a full disk would."""
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path), str(48 * 1024)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]
            ),
        },
        check=False,
    )
    assert child.returncode == 0, child.stderr
    outcome = json.loads(child.stdout)
    assert outcome["cycles"] == 12000  # every cycle was published, none waited
    assert outcome["failing"]
    assert child.stderr.count("cannot be written") == 1, child.stderr
    assert (tmp_path / "history.db").stat().st_size <= 48 * 1024


def test_without_sqlite3_run_and_the_page_still_load() -> None:
    """Venus OS splits the standard library into packages: sqlite3 may be missing there."""
    probe = textwrap.dedent(
        """
        import sys
        sys.modules["sqlite3"] = None  # as if python3-sqlite3 were not installed
        import hems_rules.app, hems_rules.cli, hems_rules.web.server, hems_rules.simulate.replay
        try:
            import hems_rules.history.recorder
        except ImportError as err:
            print("recorder needs", err.name)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "recorder needs sqlite3"


def test_a_batch_seen_both_stored_and_pending_counts_once() -> None:
    t0 = Day().start.timestamp()
    recording = Recording.empty(t0, t0 + 60)
    events = [Event(t0 + 1, "decision", c, {"state": "on"}) for c in ("a", "b", "c")] * 4
    batch = Batch(5.0, recording.first, {"pv": [1.0, 2.0]}, events[:3])
    recording.add(batch)
    recording.add(Batch(5.0, recording.first, {"pv": [1.0, 2.0]}, events))
    recording.sort_events()
    assert [e.subject for e in recording.events] == ["a", "b", "c"]
    assert recording.column("pv")[:3] == [1.0, 2.0, None]


async def test_a_flush_that_fails_unexpectedly_is_logged_and_writing_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in one flush (not a disk error) must not end the history's writes for good."""
    day = Day()
    config = HistoryConfig(path=str(tmp_path / "history"))
    async with Recorder(config, day.rules, flush_every=0.05) as recorder:
        write, calls = recorder.store.write, []

        def flaky(batches: Iterable[Batch]) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("a bug in the first write")
            write(batches)

        recorder.store.write = flaky  # type: ignore[method-assign]

        def cycling() -> bool:
            recorder.publish(day.cycle(seconds=5.0))  # the loop goes on cycling meanwhile
            return len(calls) >= 2

        await wait_until(cycling, 10, "a second flush after the failed one")
    assert "a bug in the first write" in caplog.text
