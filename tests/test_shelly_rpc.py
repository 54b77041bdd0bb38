"""The Shelly RPC client against the emulator over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.shelly.rpc import (
    DeviceConnectionError,
    DeviceTimeoutError,
    InvalidAuthError,
    InvalidResponseError,
    RpcCallError,
    ShellyRpc,
)
from tests.conftest import wait_until


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_switch_set_and_status(session: aiohttp.ClientSession) -> None:
    async with EmulatedShelly(switches=2, loads=[1000, 2000]) as device:
        rpc = ShellyRpc(session, "127.0.0.1", device.port)
        assert await rpc.call("Switch.Set", {"id": 1, "on": True}) == {"was_on": False}
        status = await rpc.call("Switch.GetStatus", {"id": 1})
        assert status["output"] is True and status["apower"] == 2000
        assert (await rpc.call("Switch.GetStatus", {"id": 0}))["output"] is False


async def test_device_errors_are_rpc_call_errors(session: aiohttp.ClientSession) -> None:
    async with EmulatedShelly() as device:
        rpc = ShellyRpc(session, "127.0.0.1", device.port)
        with pytest.raises(RpcCallError) as missing:
            await rpc.call("Switch.GetStatus")
        assert missing.value.code == -103
        with pytest.raises(RpcCallError) as unknown:
            await rpc.call("Switch.GetStatus", {"id": 7})
        assert unknown.value.code == -105


async def test_digest_auth_right_and_wrong(session: aiohttp.ClientSession) -> None:
    async with EmulatedShelly(password="s3cret") as device:
        good = ShellyRpc(session, "127.0.0.1", device.port, password="s3cret")
        for _ in range(3):  # the nonce is reused with a growing count
            await good.call("Switch.Set", {"id": 0, "on": True})
        assert device.switches[0].output
        wrong = ShellyRpc(session, "127.0.0.1", device.port, password="guess")
        with pytest.raises(InvalidAuthError, match="refused the password"):
            await wrong.call("Switch.Set", {"id": 0, "on": False})
        none = ShellyRpc(session, "127.0.0.1", device.port)
        with pytest.raises(InvalidAuthError, match="needs a password"):
            await none.call("Switch.GetStatus", {"id": 0})
        assert (await none.call("Shelly.GetDeviceInfo"))["auth_en"] is True
        assert device.switches[0].output


@pytest.mark.parametrize(
    ("fault", "error"),
    [("garbage", InvalidResponseError), ("http500", DeviceConnectionError)],
)
async def test_garbage_and_server_errors(
    session: aiohttp.ClientSession, fault: str, error: type[Exception]
) -> None:
    async with EmulatedShelly() as device:
        device.fault = fault  # type: ignore[assignment]
        with pytest.raises(error):
            await ShellyRpc(session, "127.0.0.1", device.port, backoff=0.01).call(
                "Switch.GetStatus", {"id": 0}
            )


async def test_a_silent_device_times_out(session: aiohttp.ClientSession) -> None:
    async with EmulatedShelly() as device:
        device.fault = "timeout"
        rpc = ShellyRpc(session, "127.0.0.1", device.port, timeout=0.2, retries=0)
        with pytest.raises(DeviceTimeoutError):
            await rpc.call("Switch.GetStatus", {"id": 0})


async def test_refused_connection_then_back(session: aiohttp.ClientSession) -> None:
    device = EmulatedShelly()
    await device.start()
    rpc = ShellyRpc(session, "127.0.0.1", device.port, retries=0)
    await device.stop()
    with pytest.raises(DeviceConnectionError):
        await rpc.call("Switch.GetStatus", {"id": 0})
    await device.start()
    try:
        assert (await rpc.call("Switch.GetStatus", {"id": 0}))["output"] is False
    finally:
        await device.stop()


async def test_one_request_in_flight_per_device(session: aiohttp.ClientSession) -> None:
    async with EmulatedShelly() as device:
        device.delay = 0.02
        rpc = ShellyRpc(session, "127.0.0.1", device.port)
        await asyncio.gather(*(rpc.call("Switch.GetStatus", {"id": 0}) for _ in range(10)))
        assert device.max_in_flight == 1
        assert len(device.calls) == 10


async def test_toggle_after_flips_back_on_the_device(session: aiohttp.ClientSession) -> None:
    async with EmulatedShelly() as device:
        rpc = ShellyRpc(session, "127.0.0.1", device.port)
        await rpc.call("Switch.Set", {"id": 0, "on": True, "toggle_after": 0.2})
        assert device.switches[0].output
        await wait_until(lambda: not device.switches[0].output, timeout=3, what="toggle_after")
