"""The history, the status page and replay: bytes per day, replay wall time, the page in a
headless browser, and what the history and the page cost `hems-rules run` in CPU.

BENCH_VIEW_SECONDS (default 120) sets how long each `run` configuration is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from bench_compare import PLAIN_SITE, Watch, footprint, startup
from common import report

from hems_rules.history.recorder import Recorder
from hems_rules.history.recording import STEP, day_bounds
from hems_rules.history.store import HistoryStore
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import HistoryConfig, PageConfig
from hems_rules.simulate.day import cycles
from hems_rules.simulate.replay import replay
from hems_rules.web.server import StatusPage
from tests.browser import Chromium, available

REPO = Path(__file__).parent.parent
DAY = datetime(2026, 6, 21, 0, 0).astimezone()
ARTIFACTS = Path(os.environ.get("HEMS_ARTIFACTS", REPO / ".artifacts")) / "bench"


async def record_day(directory: Path) -> None:
    """24 h of the example rules at 1 s cycles, written once a simulated minute."""
    rules = load_rules(REPO / "rules")
    async with Recorder(HistoryConfig(path=str(directory)), rules, flush_every=1e9) as recorder:
        started = time.perf_counter()
        for n, result in enumerate(cycles(rules, DAY, 24.0)):
            recorder.publish(result)
            if n % 60 == 59:
                await recorder.flush()
        report("history_record_day_1s_cycles_wall", time.perf_counter() - started, "s")
    report("history_bytes_per_day", (directory / "history.db").stat().st_size / 1e6, "MB")


def replay_day(directory: Path) -> None:
    rules = load_rules(REPO / "rules")
    started = time.perf_counter()
    store = HistoryStore(directory)
    store.open(create=False)
    recording = store.read(*day_bounds(DAY.date()), STEP)
    store.close()
    read = time.perf_counter()
    comparison = replay(recording, rules)
    done = time.perf_counter()
    report("history_read_day", (read - started) * 1000, "ms")
    report("replay_day_in_process", done - read, "s")
    assert comparison.seconds >= 86000
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "hems_rules.cli", "replay", str(directory), "--rules", "rules"],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    report("replay_day_command", time.perf_counter() - started, "s")


async def page_load(directory: Path) -> None:
    """First load and the time to a full day's chart, in headless Chromium."""
    if not available():
        print("BENCH page_load skipped (no chromium)")
        return
    rules = load_rules(REPO / "rules")
    async with (
        Recorder(HistoryConfig(path=str(directory)), rules) as history,
        StatusPage(PageConfig(port=0, bind="127.0.0.1"), rules, history=history) as page,
        Chromium() as browser,
    ):
        url = f"http://127.0.0.1:{page.port}/"
        sizes = (("desktop", 1280, 900, False), ("phone", 390, 844, True))
        for name, width, height, mobile in sizes:
            async with browser.tab(width, height, mobile=mobile, scale=2 if mobile else 1) as tab:
                await tab.goto(url)
                chart = await tab.wait_for(
                    "performance.getEntriesByName('hems-chart')[0]?.startTime", timeout=30
                )
                timing = await tab.evaluate(
                    "(() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return [n.domContentLoadedEventEnd, n.loadEventEnd]; })()"
                )
                transferred = await tab.evaluate(
                    "performance.getEntriesByType('resource').concat("
                    "performance.getEntriesByType('navigation'))"
                    ".reduce((s, e) => s + e.transferSize, 0)"
                )
                report(f"page_{name}_first_load", timing[1], "ms")
                report(f"page_{name}_full_day_chart", chart, "ms")
                report(f"page_{name}_bytes_transferred", transferred / 1000, "kB")
                await tab.screenshot(ARTIFACTS / f"day-{name}.png")
    print(f"day screenshots in {ARTIFACTS}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def run_cpu(seconds: float) -> None:
    """`hems-rules run` (bench_compare's footprint): bare, with history and page, watched."""
    port = free_port()

    @contextlib.asynccontextmanager
    async def viewer() -> AsyncIterator[object]:
        async with Chromium() as browser, browser.tab(1280, 900) as tab:
            await tab.goto(f"http://127.0.0.1:{port}/")
            await tab.wait_for("document.getElementById('link').textContent === 'live'")
            yield tab

    bare = PLAIN_SITE.replace("}", ", web: {enabled: false}, history: {enabled: false}}")
    with tempfile.TemporaryDirectory() as tmp:
        views = PLAIN_SITE.replace(
            "}", f", web: {{port: {port}, bind: 127.0.0.1}}, history: {{path: '{tmp}'}}}}"
        )
        configurations: list[tuple[str, str, Watch | None]] = [
            ("run_bare", bare, None),
            ("run_history_page", views, None),
        ]
        if available():
            configurations.append(("run_history_page_watched", views, viewer))
        for name, site, watch in configurations:
            decision, _ = await startup(REPO, site)
            report(f"{name}_start_to_first_decision", decision * 1000, "ms")
            figures = await footprint(REPO, seconds, site, watch)
            report(f"{name}_rss", figures["VmRSS"], "MiB")
            report(f"{name}_cpu", figures["cpu"], "% of one core")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        await record_day(directory)
        replay_day(directory)
        await page_load(directory)
    await run_cpu(float(os.environ.get("BENCH_VIEW_SECONDS", "120")))


if __name__ == "__main__":
    asyncio.run(main())
