"""The status page in a real headless Chromium, against `hems-rules demo` on a private bus.

The demo runs as a user starts it; the tests read the page as a person would (every
consumer, its reason, every chart series, a phone's viewport), flip Auto from D-Bus as
VRM would and watch the page follow, and try the page's controls, also from a foreign
page. Screenshots are kept in the artifacts directory printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hems_rules.ruleset import load_rules
from tests.browser import Chromium, Tab, available
from tests.bus import DbusDaemon
from tests.web_server import serving

REPO = Path(__file__).parent.parent
ARTIFACTS = Path(os.environ.get("HEMS_ARTIFACTS", REPO / ".artifacts")) / "page"
SWITCH = "com.victronenergy.switch.hems"
PASSWORD = "correct horse battery"
EXAMPLE = load_rules(REPO / "rules")
SERIES = ["PV", "Consumption", "Surplus", "Reservation", "Battery", "SOC"]

# CI installs chromium (.ci/run), so there a missing browser fails instead of skipping.
pytestmark = pytest.mark.skipif(
    not available() and not os.environ.get("CI"), reason="no chromium (.ci/run installs it)"
)


@asynccontextmanager
async def demo(daemon: DbusDaemon, rules: Path, history: Path) -> AsyncIterator[str]:
    """`hems-rules demo` on the test's bus; yields the page's URL once it is served."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hems_rules.cli", "demo", "--rules", str(rules),
        "--bus", daemon.address, "--port", "0", "--history", str(history), "--speed", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "the demo ended before serving its page"
            if found := re.search(r"status page: (http://\S+)", line):
                url = found[1]
        drain = asyncio.create_task(process.stdout.read())
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        if drain is not None:
            drain.cancel()


async def device_number(daemon: DbusDaemon, name: str) -> int:
    for n in range(10):
        reply = await daemon.send(SWITCH, f"/Devices/{n}/Name", "GetValue")
        if f'"{name}"' in reply:
            return n
    raise AssertionError(f"{name} is not on the switch service")


async def auto_on_bus(daemon: DbusDaemon, number: int) -> int:
    reply = await daemon.send(SWITCH, f"/Devices/{number}/S2/Auto", "GetValue")
    found = re.search(r"int32 (\d)", reply)
    assert found, reply
    return int(found[1])


async def relay_on_bus(daemon: DbusDaemon, number: int) -> int:
    """The relay as the switch pane shows it: /SwitchableOutput/<n>/State."""
    reply = await daemon.send(SWITCH, f"/SwitchableOutput/{number}/State", "GetValue")
    found = re.search(r"int32 (\d)", reply)
    assert found, reply
    return int(found[1])


async def loaded(tab: Tab, url: str) -> None:
    await tab.goto(url)
    await tab.wait_for(
        "document.querySelectorAll('#consumers li').length === 6"
        " && performance.getEntriesByName('hems-chart').length === 1"
        " && document.getElementById('link').textContent === 'live'",
        timeout=20,
        what="the live view and the day's chart",
    )


READ_PAGE = """(() => {
  const rows = [...document.querySelectorAll('#consumers li')];
  const legends = [...document.querySelectorAll('.u-legend')].map(
    (l) => [...l.querySelectorAll('.u-series .u-label')].map((s) => s.textContent));
  return {
    consumers: rows.map((li) => ({
      name: li.querySelector('.consumer-name').firstChild.textContent.trim(),
      state: li.querySelector('.state').textContent,
      reason: li.querySelector('.reason').textContent,
      facts: li.querySelector('.facts').textContent,
      actions: !li.querySelector('.actions').hidden,
    })),
    legends,
    bands: [...document.querySelectorAll('.band-label')].map((b) => b.textContent),
    unlock: !document.getElementById('unlock').hidden,
    reservation: document.getElementById('reservation').textContent,
    surplus: document.getElementById('surplus').textContent,
  };
})()"""


def facts_of(page: dict[str, Any], name: str) -> str:
    facts: str = next(c["facts"] for c in page["consumers"] if c["name"] == name)
    return facts


async def test_the_page_shows_the_demo_live_on_a_desktop_and_a_phone(
    dbus_daemon: DbusDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        demo(dbus_daemon, REPO / "rules", tmp_path / "history") as url,
        Chromium() as browser,
    ):
        async with browser.tab(1280, 900) as tab:
            await loaded(tab, url)
            page = await tab.evaluate(READ_PAGE)
            names = [c.name for c in EXAMPLE.consumers]
            assert sorted(c["name"] for c in page["consumers"]) == sorted(names)
            for consumer in page["consumers"]:
                assert consumer["state"] in ("on", "off", "unavailable")
                assert re.search(r"ran \d+ h \d\d min today", consumer["facts"]), consumer
                assert re.match(r"(on|off|not controlled|unavailable)\b", consumer["reason"])
                assert not consumer["actions"], "read-only by default"
            assert not page["unlock"]
            power, stacked = page["legends"]
            assert power[1:] == SERIES
            assert stacked[1:] == [c["name"] for c in page["consumers"]]
            assert page["bands"] == [c["name"] for c in page["consumers"]]
            assert page["reservation"].endswith(" W") and "L1" in page["surplus"]
            # The relays start off (min_off from when they rejoined): wait for the first load.
            day = await tab.wait_for(
                "fetch('/api/day').then((r) => r.json()).then((day) =>"
                " day.consumers.some((c) => c.power.some((p) => p > 0)) && day)",
                timeout=20,
                what="a consumer's power in the day's chart",
            )
            for name in ("pv", "consumption", "surplus", "reservation", "battery", "soc"):
                assert any(v is not None for v in day["series"][name]), name
            assert all(c["bands"] for c in day["consumers"])

            # Clicking a stretch of a band tells why it was on (once it is wide enough).
            # The demo's day runs fast and the live page redraws its bands as it goes: a
            # click that a redraw beat to its spot is made again on the band's new place.
            on = (
                "[...document.querySelectorAll('.band-track[data-id=heater_l1] .on')]"
                ".sort((a, b) => b.offsetWidth - a.offsetWidth)[0]"
            )
            deadline = time.monotonic() + 30
            why = ""
            while not why.startswith("Heater L1") and time.monotonic() < deadline:
                await tab.wait_for(f"{on}?.getBoundingClientRect().width >= 6", 30, what="a band")
                spot = await tab.evaluate(
                    f"(() => {{ const s = {on}; s.scrollIntoView({{block: 'center'}});"
                    " const r = s.getBoundingClientRect();"
                    " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
                )
                await tab.click(*spot)
                why = await tab.evaluate("document.getElementById('band-info').textContent")
            assert re.match(r"Heater L1, .+–.+, on: \w", why) and "on: on:" not in why, why

            # VRM (or Node-RED) turns Auto off for Heater L2: the page follows by itself.
            number = await device_number(dbus_daemon, "Heater L2")
            assert "Auto on" in facts_of(page, "Heater L2")
            written = time.monotonic()
            await dbus_daemon.send(
                SWITCH, f"/Devices/{number}/S2/Auto", "SetValue", "variant:int32:0"
            )
            await tab.wait_for(
                "[...document.querySelectorAll('#consumers li')].some((li) =>"
                " li.dataset.id === 'heater_l2' && li.querySelector('.facts').textContent"
                ".includes('Auto off') && li.querySelector('.reason').textContent"
                ".startsWith('not controlled'))",
                timeout=5,
                what="Auto off shown for Heater L2",
            )
            print(f"Auto off on D-Bus shown by the page after {time.monotonic() - written:.2f} s")
            assert await tab.evaluate("document.getElementById('link').textContent") == "live"
            assert tab.javascript_errors() == []
            desktop = await tab.screenshot(ARTIFACTS / "desktop.png")

        async with browser.tab(390, 844, mobile=True, scale=2) as phone:
            await loaded(phone, url)
            layout = await phone.evaluate(
                """(() => {
                  const small = [...document.querySelectorAll('button, select, input')]
                    .filter((e) => e.offsetParent !== null)
                    .filter((e) => e.getBoundingClientRect().height < 44)
                    .map((e) => e.outerHTML.slice(0, 60));
                  return {
                    overflow: document.documentElement.scrollWidth - window.innerWidth,
                    body: parseFloat(getComputedStyle(document.body).fontSize),
                    reason: parseFloat(
                      getComputedStyle(document.querySelector('.reason')).fontSize),
                    small,
                    chart: document.querySelector('#power-chart canvas')
                      .getBoundingClientRect().width,
                  };
                })()"""
            )
            assert layout["overflow"] <= 0, "nothing wider than a phone"
            assert layout["body"] >= 16 and layout["reason"] >= 14
            assert layout["small"] == [], "tap targets of at least 44 px"
            assert 300 <= layout["chart"] <= 390
            assert phone.javascript_errors() == []
            mobile = await phone.screenshot(ARTIFACTS / "phone.png")
            await phone.evaluate("document.getElementById('day').scrollIntoView()")
            await phone.screenshot(ARTIFACTS / "phone-chart.png", full=False)
    with capsys.disabled():
        print(f"\npage screenshots: {desktop} {mobile}")


@pytest.fixture
def control_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    site = rules / "site.yaml"
    site.write_text(
        site.read_text().replace(
            "site:\n", f"site:\n  web: {{control: true, password: {json.dumps(PASSWORD)}}}\n", 1
        )
    )
    return rules


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    sent = {"X-HEMS-Request": "1"} if headers is None else headers
    data = json.dumps(body) if not isinstance(body, str) else body
    kind = {"Content-Type": "application/json", **sent}
    async with http.post(url, data=data, headers=kind) as response:
        return response.status, await response.json()


async def test_control_needs_the_password_and_refuses_what_is_wrong(
    dbus_daemon: DbusDaemon, tmp_path: Path, control_rules: Path
) -> None:
    async with demo(dbus_daemon, control_rules, tmp_path / "history") as url:
        number = await device_number(dbus_daemon, "Heater L1")
        auto = url + "api/auto"
        good = {"consumer": "heater_l1", "auto": 0, "password": PASSWORD}
        async with aiohttp.ClientSession() as http:
            refusals = [
                (await post(http, auto, {**good, "password": "guess"}), 403, "wrong password"),
                (await post(http, auto, {**good, "consumer": "sauna"}), 404, "no consumer"),
                (await post(http, auto, {**good, "auto": 2}), 400, "auto must be 0 or 1"),
                (await post(http, auto, {**good, "auto": True}), 400, "auto must be 0 or 1"),
                (await post(http, auto, "{not json", None), 400, "not JSON"),
                (await post(http, auto, good, {}), 403, "X-HEMS-Request"),
                (
                    await post(http, auto, good, {"X-HEMS-Request": "1", "Origin": "http://evil"}),
                    403,
                    "another site",
                ),
            ]
            for (status, answer), expected, fragment in refusals:
                assert status == expected and fragment in answer["error"], answer
            async with http.post(auto, data=json.dumps(good), headers={"X-HEMS-Request": "1"}) as r:
                assert r.status == 415  # a form or text/plain post
            assert await auto_on_bus(dbus_daemon, number) == 1, "nothing changed"
            status, answer = await post(
                http,
                url + "api/switch",
                {"consumer": "heater_l1", "on": True, "password": PASSWORD},
            )
            assert status == 409 and "Auto" in answer["error"]
            status, answer = await post(http, auto, good)
            assert status == 200 and answer["ok"], answer
            assert await auto_on_bus(dbus_daemon, number) == 0
            status, answer = await post(
                http,
                url + "api/switch",
                {"consumer": "heater_l1", "on": True, "password": PASSWORD},
            )
            assert status == 200 and answer["ok"], answer
            for _ in range(100):  # the relay reports back within a poll or two
                if await relay_on_bus(dbus_daemon, number) == 1:
                    break
                await asyncio.sleep(0.1)
            assert await relay_on_bus(dbus_daemon, number) == 1, "switched on by hand"


async def test_the_page_switches_auto_and_a_foreign_page_cannot(
    dbus_daemon: DbusDaemon, tmp_path: Path, control_rules: Path
) -> None:
    # A page from another origin that knows the password and tries anyway.
    foreign = web.Application()
    attempt = """<script>
      const target = new URLSearchParams(location.search).get('target');
      fetch(target + 'api/auto', {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-HEMS-Request': '1'},
        body: JSON.stringify({consumer: 'heater_l3', auto: 0, password: PASSWORD})})
        .then(() => document.title = 'sent', () => document.title = 'blocked');
    </script>""".replace("PASSWORD", json.dumps(PASSWORD))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=attempt, content_type="text/html")

    foreign.router.add_get("/", serve)
    async with (
        serving(foreign) as foreign_port,
        demo(dbus_daemon, control_rules, tmp_path / "history") as url,
        Chromium() as browser,
        browser.tab(1280, 900) as tab,
    ):
        l3 = await device_number(dbus_daemon, "Heater L3")
        await tab.goto(f"http://127.0.0.1:{foreign_port}/?target={url}")
        await tab.wait_for("document.title !== ''", what="the foreign request to end")
        assert await tab.evaluate("document.title") == "blocked"
        assert await auto_on_bus(dbus_daemon, l3) == 1

        await loaded(tab, url)
        assert await tab.evaluate("!document.getElementById('unlock').hidden")
        await tab.evaluate(
            "(() => { const p = document.getElementById('password');"
            f" p.value = {json.dumps(PASSWORD)}; p.dispatchEvent(new Event('input')); }})()"
        )
        await tab.evaluate(
            "document.querySelector('li[data-id=heater_l3] button[data-act=auto]').click()"
        )
        await wait_until_auto(dbus_daemon, l3, 0)
        await tab.wait_for(
            "document.getElementById('control-message').textContent.includes('set to 0')",
            what="the page confirming the write",
        )
        await tab.wait_for(
            "document.querySelector('li[data-id=heater_l3] .facts').textContent"
            ".includes('Auto off')",
            what="the page showing Auto off",
        )
        # A bad edit: the page names the file, line and column; the old rules run on.
        heaters = control_rules / "heaters.yaml"
        heaters.write_text(heaters.read_text().replace("power: 1150", "power: lots", 1))
        error = await tab.wait_for(
            "!document.getElementById('errors').hidden"
            " && document.getElementById('rules-error').textContent",
            timeout=15,
            what="the rule error on the page",
        )
        assert re.search(r"heaters\.yaml:\d+:\d+: consumers\[0\]\.power", error), error
        assert await tab.evaluate("document.querySelectorAll('#consumers li').length") == 6
        assert tab.javascript_errors() == []
        await tab.screenshot(ARTIFACTS / "control.png")


async def wait_until_auto(daemon: DbusDaemon, number: int, value: int) -> None:
    seen: list[int] = []

    async def check() -> None:
        seen.append(await auto_on_bus(daemon, number))

    deadline = time.monotonic() + 5
    while True:
        await check()
        if seen[-1] == value:
            return
        assert time.monotonic() < deadline, f"Auto stayed {seen[-1]}"
        await asyncio.sleep(0.1)
