"""Failures told once, split by who must act: the health helper and its users."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from hems_rules.core.inputs import Inputs
from hems_rules.core.model import Settings
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.errors import ConfigurationError, TransientError
from hems_rules.health import Faults, Health, reason
from hems_rules.ruleset.rules import ShellyEndpoint
from hems_rules.shelly.relays import ShellyRelays
from hems_rules.shelly.rpc import (
    DeviceBusyError,
    DeviceConnectionError,
    InvalidAuthError,
    InvalidRequestError,
    InvalidResponseError,
    ShellyRpc,
)
from tests.conftest import rules_from, wait_until
from tests.live import running, surplus


class Down(TransientError):
    reason = "it is down"


class Wrong(ConfigurationError):
    pass


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tests.health"]


def test_a_failure_is_told_once_and_its_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    faults = Faults()
    shown: list[str] = []
    faults.listen(shown.append)
    health = Health("heater", logging.getLogger("tests.health"), faults)
    assert not health.ok()  # never failed: nothing to tell
    assert health.failed(Down("refused"))
    assert not health.failed(Down("timeout"))  # the same failure, retried
    assert health.failures == 2
    assert health.failed(Wrong("wrong password"))  # a new kind: the user must act
    assert not health.failed(Wrong("wrong password"))
    assert faults.text == "heater: wrong password"
    assert health.failed(Down("unplugged"))  # password fixed, device away: new again
    assert faults.text == ""
    assert health.ok() and not health.ok()
    assert messages(caplog) == [
        "heater unavailable: refused",
        "heater: configuration fault, the user must act: wrong password",
        "heater unavailable: unplugged",
        "heater available again",
    ]
    assert [r.levelname for r in caplog.records if r.name == "tests.health"] == [
        "WARNING",
        "ERROR",
        "WARNING",
        "INFO",
    ]
    assert shown == ["", "heater: wrong password", ""]


def test_a_bug_is_shown_with_its_traceback_once(caplog: pytest.LogCaptureFixture) -> None:
    health = Health("pump", logging.getLogger("tests.health"))
    for _ in range(3):
        health.failed(KeyError("x"))
    (record,) = [r for r in caplog.records if r.name == "tests.health"]
    assert record.exc_info is not None


def test_faults_of_several_sources_are_listed_and_closed() -> None:
    faults = Faults()
    one = Health("b", faults=faults)
    two = Health("a", faults=faults)
    one.failed(Wrong("no switch 3"))
    two.failed(Wrong("bad login"))
    assert faults.text == "a: bad login\nb: no switch 3"
    one.close()
    assert faults.text == "a: bad login"


def test_reasons_in_plain_words() -> None:
    assert reason(Down("x")) == "it is down"
    assert reason(Wrong("the password is wrong")) == "the password is wrong"
    assert reason(RuntimeError("boom")) == "it does not answer"


async def test_shelly_errors_are_split_by_who_must_act() -> None:
    async with aiohttp.ClientSession() as session, EmulatedShelly(password="s3cret") as device:
        rpc = ShellyRpc(session, "127.0.0.1", device.port, password="guess", backoff=0.01)
        with pytest.raises(InvalidAuthError) as auth:
            await rpc.call("Switch.GetStatus", {"id": 0})
        assert isinstance(auth.value, ConfigurationError)
        assert auth.value.reason == "the Shelly refused the password"
        good = ShellyRpc(session, "127.0.0.1", device.port, password="s3cret")
        with pytest.raises(InvalidRequestError) as missing:
            await good.call("Switch.GetStatus", {"id": 3})
        assert isinstance(missing.value, ConfigurationError)
        assert missing.value.code == -105
        assert missing.value.reason == "the Shelly has no switch 3"
        device.fault = "garbage"
        with pytest.raises(InvalidResponseError) as garbage:
            await good.call("Switch.GetStatus", {"id": 0})
        assert isinstance(garbage.value, TransientError)
        await device.stop()
        with pytest.raises(DeviceConnectionError) as away:
            await good.call("Switch.GetStatus", {"id": 0})
        assert isinstance(away.value, TransientError)
    assert issubclass(DeviceBusyError, TransientError)
    assert not issubclass(DeviceBusyError, ConfigurationError)


RULES = """\
site: {{phases: 1, battery_reservation: 0, loop_interval: 0.2s}}
consumers:
  - {{id: h1, shelly: {{host: h1.invalid, port: {port}, password: {password}, switch: {switch}}},
     power: 1000}}
"""


@pytest.mark.parametrize(
    ("password", "switch", "why"),
    [
        ("guess", 0, "the Shelly refused the password"),
        ("s3cret", 3, "the Shelly has no switch 3"),
    ],
)
async def test_a_shelly_configuration_fault_is_said_once_where_the_user_looks(
    caplog: pytest.LogCaptureFixture, password: str, switch: int, why: str
) -> None:
    """Defect 4: not "the relay does not answer", for the device did answer."""
    caplog.set_level(logging.INFO)
    async with EmulatedShelly(password="s3cret") as device:
        rules = rules_from(RULES.format(port=device.port, password=password, switch=switch))
        faults = Faults()
        inputs = Inputs(rules, Settings(mode=1))

        def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
            return "127.0.0.1", endpoint.port

        async with ShellyRelays(
            inputs.set_device, 0.05, timeout=0.5, address=loopback, faults=faults
        ) as relays:
            relays.sync(rules.consumers)
            await wait_until(lambda: "h1" in inputs.devices, what="the first poll")
            await wait_until(lambda: device.requests >= 10, what="retries")
            assert inputs.devices["h1"].cause == why
            assert faults.text.startswith("h1 (Shelly 127.0.0.1:")
            told = [r for r in caplog.records if r.name == "hems_rules.shelly.relays"]
            assert [r.levelname for r in told] == ["ERROR"], [r.getMessage() for r in told]
            assert "configuration fault" in told[0].getMessage()
            relays.sync([])  # the consumer is removed from the rules: its fault goes too
            await wait_until(lambda: faults.text == "", what="the fault cleared")


async def test_the_engine_gives_the_cause_as_the_reason() -> None:
    async with EmulatedShelly(password="s3cret") as device:
        rules = rules_from(RULES.format(port=device.port, password="guess", switch=0))
        async with running(rules, {"h1": device}) as (inputs, loop, _):
            surplus(inputs, 1500)

            def reason_now() -> str:
                plan = loop.controller.plan
                return plan.decision("h1").reason if plan else ""

            await wait_until(lambda: reason_now() == "unavailable: the Shelly refused the password")


async def test_shelly_clients_do_not_pile_up_over_reloads() -> None:
    """Defect 8: one client per device in the rules, however often they change."""
    inputs = Inputs(rules_from(RULES.format(port=1, password="a", switch=0)))
    async with ShellyRelays(inputs.set_device, 60.0, address=lambda e: ("127.0.0.1", e.port)) as r:
        for port in range(1000, 1050):
            rules = rules_from(RULES.format(port=port, password="a", switch=0))
            r.sync(rules.consumers)
        assert r.clients == 1
        r.sync([])
        assert r.clients == 0
