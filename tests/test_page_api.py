"""The status page's day API over real HTTP, without a browser: what a script may ask."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

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


class Refusing:
    def set_auto(self, consumer_id: str, value: int) -> bool:
        return False

    def switch(self, consumer_id: str, on: bool) -> bool:
        return False


async def test_a_client_that_stalls_mid_request_does_not_hold_up_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp 3.10 and later let a request under way finish before the server stops,
    for up to a minute by default: a phone that lost its Wi-Fi halfway through a
    control request held `run`'s shutdown, and with it the releases, that long."""
    reading = asyncio.Event()
    json = web.BaseRequest.json

    async def read_body(request: web.BaseRequest, **kwargs: Any) -> Any:
        reading.set()
        return await json(request, **kwargs)

    monkeypatch.setattr(web.BaseRequest, "json", read_body)
    config = PageConfig(port=0, bind="127.0.0.1", control=True, password="a password")
    page = StatusPage(config, Day().rules, control=Refusing())
    await page.__aenter__()
    try:
        assert page.port is not None
        _, stalled = await asyncio.open_connection("127.0.0.1", page.port)
        stalled.write(
            b"POST /api/auto HTTP/1.1\r\nHost: 127.0.0.1\r\nX-HEMS-Request: 1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await asyncio.wait_for(reading.wait(), 5)
        await asyncio.wait_for(page.__aexit__(None, None, None), 5)
        stalled.close()
    finally:
        await page.__aexit__(None, None, None)
