"""HTTP polls of Shelly add-on temperatures on the emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.ruleset.rules import HttpSource
from hems_rules.sources.http import FAILURES_BEFORE_UNKNOWN, HttpPoller
from hems_rules.sources.payloads import MAX_CHARS
from tests.web_server import serving


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def poller(
    session: aiohttp.ClientSession, device: EmulatedShelly, seen: dict[str, float | None], **kw: str
) -> HttpPoller:
    url = f"http://127.0.0.1:{device.port}/rpc/Temperature.GetStatus?id=100"
    source = HttpSource(url=url, json="tC", every=0.1, **kw)  # type: ignore[arg-type]
    return HttpPoller("rod", source, session, seen.__setitem__, timeout=0.3)


async def test_temperature_with_digest_auth(session: aiohttp.ClientSession) -> None:
    seen: dict[str, float | None] = {}
    async with EmulatedShelly(temperatures={100: 64.5}, password="pw") as device:
        await poller(session, device, seen, password="pw").poll()
        assert seen == {"rod": 64.5}
        device.temperatures[100] = 91.0
        wrong = poller(session, device, seen, password="nope")
        for _ in range(FAILURES_BEFORE_UNKNOWN):
            await wrong.poll()
        assert seen == {"rod": None}


async def test_a_sensor_read_error_is_unknown_not_zero(session: aiohttp.ClientSession) -> None:
    seen: dict[str, float | None] = {}
    async with EmulatedShelly(temperatures={100: None}) as device:
        await poller(session, device, seen).poll()
        assert seen == {"rod": None}


@pytest.mark.parametrize("fault", ["garbage", "http500", "timeout", "stopped"])
async def test_failures_keep_the_value_then_make_it_unknown(
    session: aiohttp.ClientSession, fault: str
) -> None:
    seen: dict[str, float | None] = {}
    async with EmulatedShelly(temperatures={100: 55.0}) as device:
        poll = poller(session, device, seen)
        await poll.poll()
        if fault == "stopped":
            await device.stop()
        else:
            device.fault = fault  # type: ignore[assignment]
        for _ in range(FAILURES_BEFORE_UNKNOWN - 1):
            await poll.poll()
            assert seen == {"rod": 55.0}
        await poll.poll()
        assert seen == {"rod": None}
        if fault == "stopped":
            await device.start()
        device.fault = None
        await poll.poll()
        assert seen == {"rod": 55.0}


async def test_an_endless_body_is_refused_at_its_bound_not_read_to_the_end(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse()
        await reply.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await reply.write(b"9" * 65536)
        return reply

    app = web.Application()
    app.router.add_get("/", endless)
    async with serving(app) as port:
        seen: dict[str, float | None] = {}
        source = HttpSource(url=f"http://127.0.0.1:{port}/", every=1.0)
        await HttpPoller("big", source, session, seen.__setitem__, timeout=10).poll()
        assert "big (HTTP 127.0.0.1:" in caplog.text
        assert f"longer than {MAX_CHARS // 1000} kB" in caplog.text
