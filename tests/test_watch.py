"""Hot reload against real files, the way editors save them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from hems_rules.ruleset import RuleSet, load_rules
from hems_rules.ruleset.changes import RulesChange, compare
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
