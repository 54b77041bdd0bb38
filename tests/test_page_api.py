"""The status page's day API over real HTTP, without a browser: what a script may ask."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from hems_rules.history.recorder import Recorder
from hems_rules.ruleset.rules import HistoryConfig, PageConfig
from hems_rules.web.server import StatusPage
from tests.history_rig import Day


async def test_a_resolution_that_is_not_a_finite_number_is_a_clear_400(tmp_path: Path) -> None:
    day = Day()
    config = HistoryConfig(path=str(tmp_path / "history"))
    async with (
        Recorder(config, day.rules, flush_every=3600) as history,
        StatusPage(PageConfig(port=0, bind="127.0.0.1"), day.rules, history=history) as page,
        aiohttp.ClientSession() as http,
    ):
        for _ in range(20):
            history.publish(day.cycle(seconds=5.0))
        base = f"http://127.0.0.1:{page.port}/api/day"
        async with http.get(base, params={"resolution": "60"}) as reply:
            assert reply.status == 200
            assert (await reply.json())["resolution"] == 60
        async with http.get(base, params={"resolution": "0"}) as reply:
            assert (await reply.json())["resolution"] == 5, "at least the history's 5 s"
        for wrong in ("nan", "inf", "-inf", "x", "1e999"):
            async with http.get(base, params={"resolution": wrong}) as reply:
                assert reply.status == 400, wrong
                assert "resolution" in (await reply.json())["error"], wrong


async def test_the_page_closes_at_once_while_a_browser_follows_it_live(tmp_path: Path) -> None:
    day = Day()
    page = StatusPage(PageConfig(port=0, bind="127.0.0.1"), day.rules)
    async with aiohttp.ClientSession() as http:
        await page.__aenter__()
        try:
            page.publish(day.cycle())
            async with http.get(f"http://127.0.0.1:{page.port}/api/live") as live:
                first = await asyncio.wait_for(live.content.readline(), 5)
                assert first.startswith(b"data: {")
                await asyncio.wait_for(page.__aexit__(None, None, None), 5)
                assert page.port is None
        finally:
            await page.__aexit__(None, None, None)
