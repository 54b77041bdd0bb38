"""The live wall clock carries the GX's real time zone, so the local day survives DST."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from hems_rules.core.daily import Day
from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Settings, Snapshot
from hems_rules.expressions import RESERVATION_NAMES, compile_expression
from hems_rules.localtime import RECHECK, LocalZone
from hems_rules.ruleset.rules import Consumer, RuleSet, Runtime, ShellyEndpoint, Site

ZONEINFO = Path("/usr/share/zoneinfo")
# Berlin: 29 March 2026 02:00 CET -> 03:00 CEST; 25 October 2026 03:00 CEST -> 02:00 CET.
SPRING = datetime(2026, 3, 29, 1, 0, tzinfo=timezone(timedelta(hours=1)))
AUTUMN = datetime(2026, 10, 25, 1, 0, tzinfo=timezone(timedelta(hours=2)))


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


@pytest.fixture
def berlin(tmp_path: Path) -> Path:
    """/etc/localtime as on a GX: a link to the zone's tzfile."""
    link = tmp_path / "localtime"
    link.symlink_to(ZONEINFO / "Europe" / "Berlin")
    return link


def test_the_zone_comes_from_etc_localtime(berlin: Path) -> None:
    clock = LocalZone(localtime=berlin, environ={})
    winter, summer = clock.now(utc(2026, 1, 15, 12, 0)), clock.now(utc(2026, 7, 15, 12, 0))
    assert str(winter.tzinfo) == "Europe/Berlin"
    assert (winter.hour, summer.hour) == (13, 14)


def test_tz_names_the_zone_before_etc_localtime(berlin: Path) -> None:
    clock = LocalZone(localtime=berlin, environ={"TZ": "America/New_York"})
    assert clock.now(utc(2026, 1, 15, 12, 0)).hour == 7


@pytest.mark.parametrize(
    ("before", "by", "deadline"),
    [
        (SPRING, 20 * 60, utc(2026, 3, 29, 18, 0)),  # 20:00 CEST
        (AUTUMN, 20 * 60, utc(2026, 10, 25, 19, 0)),  # 20:00 CET
        (SPRING + timedelta(hours=3), 0, utc(2026, 3, 28, 23, 0)),  # midnight was CET
        (AUTUMN + timedelta(hours=3), 0, utc(2026, 10, 24, 22, 0)),  # midnight was CEST
    ],
)
def test_wall_clock_times_hold_across_a_dst_change(
    berlin: Path, before: datetime, by: int, deadline: float
) -> None:
    """A deadline or midnight read off a cycle's time is the wall clock's, on either side
    of the change. With the offset in force at the cycle alone, it was an hour off."""
    now = LocalZone(localtime=berlin, environ={}).now(before.timestamp())
    assert Day(now).at(by) == deadline
    offset = now.utcoffset()
    assert offset is not None
    assert Day(now.astimezone(timezone(offset))).at(by) != deadline  # the fixed offset's


def test_a_due_runtime_starts_by_the_wall_clock_on_a_dst_night(berlin: Path) -> None:
    """The live path: cycles a minute apart through the spring night, their times from
    the live clock. 4 h by 05:00 CEST (03:00 UTC) are due at 23:00 UTC, before the clocks
    change; with the offset in force then (CET), it was an hour later, an hour short."""
    assert first_due(LocalZone(localtime=berlin, environ={}).now) == utc(2026, 3, 28, 23, 0)

    def fixed(timestamp: float) -> datetime:  # the old live clock, at `timestamp`
        now = datetime.fromtimestamp(timestamp, ZoneInfo("Europe/Berlin"))
        offset = now.utcoffset()
        assert offset is not None
        return now.astimezone(timezone(offset))

    assert first_due(fixed) == utc(2026, 3, 29, 0, 0)


def first_due(clock: Callable[[float], datetime]) -> float:
    """When a 4 h minimum by 05:00 switches on, cycling every minute from 22:00 CET."""
    consumer = Consumer(
        id="heat_pump",
        name="heat_pump",
        shelly=ShellyEndpoint(host="h.invalid"),
        power=1000,
        runtime=Runtime(min=4 * 3600.0, by=5 * 60),
    )
    rules = RuleSet(
        site=Site(battery_reservation=compile_expression("0", RESERVATION_NAMES), phases=1),
        consumers=(consumer,),
    )
    snapshot = Snapshot(
        system=MappingProxyType({"/Ac/PvOnGrid/L1/Power": 0.0, "/Ac/Consumption/L1/Power": 300.0}),
        settings=Settings(mode=1),
        devices=MappingProxyType({"heat_pump": DeviceFact(on=False)}),
    )
    state = EngineState()
    t = utc(2026, 3, 28, 21, 0)
    while True:
        plan, state = decide(rules, snapshot, state, clock(t))
        if plan.decision("heat_pump").command:
            return t
        t += 60.0


def test_without_a_zone_the_current_offset_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hems_rules.localtime")
    for clock in (
        LocalZone(localtime=tmp_path / "missing", environ={}),
        LocalZone(localtime=tmp_path / "missing", environ={"TZ": "CET-1CEST,M3.5.0,M10.5.0/3"}),
    ):
        now = clock.now()
        assert now.utcoffset() is not None
        assert isinstance(now.tzinfo, timezone)
    assert "local time zone unknown" in caplog.text


def test_a_new_zone_is_seen_within_a_minute(tmp_path: Path, berlin: Path) -> None:
    ticks = [0.0]
    clock = LocalZone(localtime=berlin, environ={}, monotonic=lambda: ticks[0])
    noon = utc(2026, 1, 15, 12, 0)
    assert clock.now(noon).hour == 13
    berlin.unlink()
    berlin.symlink_to(ZONEINFO / "Europe" / "Lisbon")
    assert clock.now(noon).hour == 13  # not looked again yet
    ticks[0] += RECHECK
    assert clock.now(noon).hour == 12
