"""Hot reload against real files, the way editors save them."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from hems_rules.errors import RulesError
from hems_rules.ruleset import RuleSet, load_rules, watch
from hems_rules.ruleset.changes import RulesChange, compare
from hems_rules.ruleset.compiler import signature
from hems_rules.ruleset.watch import RulesWatcher
from tests.conftest import wait_until

SITE = "site: {phases: 1, battery_reservation: 0}\n"


def heaters(*ids: str, power: int = 1000) -> str:
    lines = ["consumers:"]
    lines += [f"  - {{id: {i}, shelly: {{host: {i}.invalid}}, power: {power}}}" for i in ids]
    return "\n".join(lines) + "\n"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "site.yaml").write_text(SITE)
    (tmp_path / "heaters.yaml").write_text(heaters("h1"))
    return tmp_path


class Swaps:
    """The rules each swap brought, with what changed from those before."""

    def __init__(self, rules_dir: Path) -> None:
        self.first = load_rules(rules_dir)
        self.seen: list[tuple[RuleSet, RulesChange]] = []

    def __call__(self, rules: RuleSet) -> None:
        before = self.seen[-1][0] if self.seen else self.first
        self.seen.append((rules, compare(before, rules)))

    def ids(self) -> list[str]:
        return [c.id for c in self.seen[-1][0].consumers] if self.seen else []


async def test_atomic_rename_is_one_reload(rules_dir: Path) -> None:
    swaps = Swaps(rules_dir)
    async with RulesWatcher(rules_dir, swaps.first, swaps, debounce=0.2) as watcher:
        temp = rules_dir / ".heaters.yaml.tmp123"
        temp.write_text(heaters("h1", "h2"))
        os.replace(temp, rules_dir / "heaters.yaml")
        await wait_until(lambda: swaps.ids() == ["h1", "h2"], what="h2 added")
        assert str(swaps.seen[-1][1]) == "consumers added: h2"
        assert watcher.reloads == 1


async def test_in_place_write_and_deletion(rules_dir: Path) -> None:
    swaps = Swaps(rules_dir)
    async with RulesWatcher(rules_dir, swaps.first, swaps, debounce=0.2):
        with open(rules_dir / "heaters.yaml", "w") as f:
            f.write(heaters("h1", power=500)[:20])
            f.flush()
            f.write(heaters("h1", power=500)[20:])
        await wait_until(lambda: len(swaps.seen) == 1, what="in-place write")
        assert swaps.seen[0][0].consumers[0].power == 500
        assert str(swaps.seen[0][1]) == "consumers changed: h1"
        (rules_dir / "more.yaml").write_text(heaters("h3"))
        await wait_until(lambda: swaps.ids() == ["h1", "h3"], what="new file")
        (rules_dir / "more.yaml").unlink()
        await wait_until(lambda: swaps.ids() == ["h1"], what="deleted file")


async def test_a_broken_save_keeps_the_last_good_rules_until_fixed(
    rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hems_rules")
    swaps = Swaps(rules_dir)
    async with RulesWatcher(rules_dir, swaps.first, swaps, debounce=0.2) as watcher:
        (rules_dir / "heaters.yaml").write_text(heaters("h1").replace("power: 1000", "power: lots"))
        await wait_until(lambda: watcher.error is not None, what="the error")
        assert [c.id for c in watcher.rules.consumers] == ["h1"]
        assert not swaps.seen
        assert (
            "heaters.yaml:2:49: consumers[0].power: 'lots' is not of type 'number'" in caplog.text
        )
        (rules_dir / "heaters.yaml").write_text(heaters("h1", "h2"))
        await wait_until(lambda: swaps.ids() == ["h1", "h2"], what="the fix")
        assert watcher.error is None
        assert "rules reloaded (errors fixed)" in caplog.text


async def test_editor_swap_files_do_not_reload(rules_dir: Path) -> None:
    swaps = Swaps(rules_dir)
    async with RulesWatcher(rules_dir, swaps.first, swaps, debounce=0.1) as watcher:
        (rules_dir / ".heaters.yaml.swp").write_text("garbage: [")
        (rules_dir / "notes.txt").write_text("hello")
        (rules_dir / "site.yaml").write_text(SITE)  # a marker that does reload
        await wait_until(lambda: watcher.reloads == 1, what="the marker reload")
        assert str(swaps.seen[0][1]) == "nothing changed"


class Errors:
    """What on_error told, as /Hems/RulesError would show it."""

    def __init__(self) -> None:
        self.shown = ""
        self.calls = 0

    def __call__(self, error: RulesError | None) -> None:
        self.shown = "" if error is None else str(error)
        self.calls += 1


@pytest.mark.timeout(30)
async def test_a_cyclic_save_is_shown_and_later_saves_still_reload(rules_dir: Path) -> None:
    swaps, errors = Swaps(rules_dir), Errors()
    async with RulesWatcher(rules_dir, swaps.first, swaps, 0.1, on_error=errors) as watcher:
        (rules_dir / "heaters.yaml").write_text("&a [*a, *a]\n")
        await wait_until(lambda: "refers to a value that contains it" in errors.shown)
        assert watcher.rules is swaps.first
        (rules_dir / "heaters.yaml").write_text(heaters("h1", "h2"))
        await wait_until(lambda: swaps.ids() == ["h1", "h2"], what="the fix")
        assert errors.shown == "" and watcher.error is None


@pytest.mark.timeout(30)
async def test_the_directory_deleted_and_created_again_is_watched_again(rules_dir: Path) -> None:
    swaps, errors = Swaps(rules_dir), Errors()
    async with RulesWatcher(
        rules_dir, swaps.first, swaps, 0.1, on_error=errors, check_every=0.2
    ) as watcher:
        shutil.rmtree(rules_dir)
        await wait_until(lambda: "not a directory" in errors.shown, what="the loss")
        rules_dir.mkdir()
        (rules_dir / "site.yaml").write_text(SITE)
        (rules_dir / "heaters.yaml").write_text(heaters("h2"))
        await wait_until(lambda: swaps.ids() == ["h2"], what="the new directory")
        (rules_dir / "heaters.yaml").write_text(heaters("h2", "h3"))
        await wait_until(lambda: swaps.ids() == ["h2", "h3"], what="a save in it")
        for _ in range(3):  # SIGHUP, again and again
            assert await watcher.reload()
        assert errors.shown == ""


@pytest.mark.timeout(30)
async def test_the_rules_path_replaced_by_a_file_then_a_symlink(tmp_path: Path) -> None:
    first, second = tmp_path / "v1", tmp_path / "v2"
    for directory, name in ((first, "h1"), (second, "h2")):
        directory.mkdir()
        (directory / "site.yaml").write_text(SITE)
        (directory / "heaters.yaml").write_text(heaters(name))
    rules = tmp_path / "rules"
    rules.symlink_to(first)
    swaps, errors = Swaps(rules), Errors()
    async with RulesWatcher(rules, swaps.first, swaps, 0.1, on_error=errors, check_every=0.2):
        rules.unlink()
        rules.write_text("not a directory")
        await wait_until(lambda: "not a directory" in errors.shown, what="a file")
        rules.unlink()
        rules.symlink_to(second)
        await wait_until(lambda: swaps.ids() == ["h2"], what="the new link")
        (second / "heaters.yaml").write_text(heaters("h2", "h4"))
        await wait_until(lambda: swaps.ids() == ["h2", "h4"], what="a save behind the link")
        (first / "heaters.yaml").write_text(heaters("old"))
        await asyncio.sleep(0.5)
        assert swaps.ids() == ["h2", "h4"]


@pytest.mark.timeout(30)
async def test_a_load_over_its_time_budget_is_an_error_and_the_next_one_works(
    rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def stuck(directory: Path) -> RuleSet:
        release.wait(20)
        raise RuntimeError("a bug in the loader")

    swaps, errors = Swaps(rules_dir), Errors()
    async with RulesWatcher(
        rules_dir, swaps.first, swaps, 0.1, on_error=errors, load_budget=0.3
    ) as watcher:
        monkeypatch.setattr(watch, "load_rules", stuck)
        assert not await watcher.reload()
        assert "loading took longer than 0.3 s" in errors.shown
        assert not await watcher.reload()
        assert "the previous load is still running" in errors.shown
        release.set()
        await wait_until(lambda: not watcher.loading, what="the stuck load to end")
        assert not await watcher.reload()
        assert "the rules could not be loaded: RuntimeError: a bug in the loader" in errors.shown
        monkeypatch.setattr(watch, "load_rules", load_rules)
        (rules_dir / "heaters.yaml").write_text(heaters("h1", "h5"))
        await wait_until(lambda: swaps.ids() == ["h1", "h5"], what="a good load")
        assert errors.shown == ""


@pytest.mark.timeout(30)
async def test_leaving_does_not_wait_for_a_stuck_load(
    rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()

    def stuck(directory: Path) -> RuleSet:
        entered.set()
        threading.Event().wait(60)
        raise AssertionError("never")

    monkeypatch.setattr(watch, "load_rules", stuck)
    swaps = Swaps(rules_dir)
    started = time.monotonic()
    async with RulesWatcher(rules_dir, swaps.first, swaps, 0.1) as watcher:
        reload = asyncio.create_task(watcher.reload())
        await asyncio.to_thread(entered.wait, 5)
    reload.cancel()
    assert time.monotonic() - started < 10


@pytest.mark.timeout(30)
async def test_a_failing_swap_is_logged_and_the_watcher_goes_on(
    rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[RuleSet] = []

    def swap(rules: RuleSet) -> None:
        seen.append(rules)
        if len(seen) == 1:
            raise RuntimeError("the engine refused")

    async with RulesWatcher(rules_dir, load_rules(rules_dir), swap, 0.1) as watcher:
        (rules_dir / "heaters.yaml").write_text(heaters("h1", "h2"))
        await wait_until(lambda: len(seen) == 1, what="the first swap")
        (rules_dir / "heaters.yaml").write_text(heaters("h1", "h3"))
        await wait_until(lambda: len(seen) == 2, what="a second swap")
        assert [c.id for c in watcher.rules.consumers] == ["h1", "h3"]
    assert "RuntimeError: the engine refused" in caplog.text


async def test_a_save_between_the_load_and_the_watcher_start_is_reloaded(
    rules_dir: Path,
) -> None:
    """`run` loads the rules, then starts for seconds on a GX (localsettings may come up
    late) before its watcher looks: a save in between was taken as already loaded, and
    the old rules ran on until the next save (a SIGHUP then is ignored too)."""
    seen = signature(rules_dir)
    swaps = Swaps(rules_dir)
    (rules_dir / "heaters.yaml").write_text(heaters("h1", "h2"))
    async with RulesWatcher(
        rules_dir, swaps.first, swaps, debounce=0.05, check_every=0.05, seen=seen
    ):
        await wait_until(lambda: swaps.ids() == ["h1", "h2"], what="h2 added")
