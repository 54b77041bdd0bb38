"""OpenSSL only for rules that need TLS (tls.py): `run` without it, and what happens when
later rules need it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from hems_rules import tls
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from tests.bus import DbusDaemon
from tests.conftest import rules_from, wait_until

REPO = Path(__file__).parent.parent
CONSUMER = "consumers: [{id: h, shelly: {host: 127.0.0.1, port: 1}, power: 1000}]\n"


def test_tls_is_needed_for_an_https_url_or_a_broker_only() -> None:
    plain = rules_from(
        "variables: {rod: {http: {url: 'http://127.0.0.1:1/t', json: tC}}}\n" + CONSUMER
    )
    assert tls.needed_by(plain) is None
    secure = rules_from(
        "variables: {tank: {http: {url: 'https://127.0.0.1:1/t', json: tC}}}\n" + CONSUMER
    )
    assert tls.needed_by(secure) == "the https:// URL of variable tank"
    broker = rules_from("site: {mqtt: {host: 127.0.0.1}}\n" + CONSUMER)
    assert "site.mqtt" in (tls.needed_by(broker) or "")


def python(code: str) -> str:
    """What a fresh interpreter prints running `code`; the test fails if it fails."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_run_without_tls_maps_no_openssl_and_its_digests_still_work() -> None:
    out = python(
        """
        import sys
        from hems_rules import tls
        assert tls.leave_out() and tls.left_out()
        import hems_rules.cli, hems_rules.app, hems_rules.sources.http
        import hems_rules.history.recorder, hems_rules.web.server
        import aiohttp, hashlib, hmac
        from hems_rules.shelly.digest import DigestAuth
        assert [m for m in ("ssl", "_ssl", "_hashlib") if sys.modules.get(m)] == []
        maps = open("/proc/self/maps").read()
        assert "libcrypto" not in maps and "libssl" not in maps, "OpenSSL mapped"
        assert hashlib.sha256(b"x").hexdigest().startswith("2d711642")
        assert hmac.compare_digest("pw", "pw")
        try:
            import ssl
        except ModuleNotFoundError as err:
            print(err)
        """
    )
    assert "No module named 'ssl': left out while no rule needs TLS" in out


def test_tls_cannot_be_left_out_once_loaded() -> None:
    python(
        """
        import ssl
        from hems_rules import tls
        assert not tls.leave_out() and not tls.left_out()
        """
    )


def test_a_redirect_to_https_without_tls_is_a_fault_the_user_can_fix() -> None:
    out = python(
        """
        from hems_rules import tls
        assert tls.leave_out()
        import asyncio
        import aiohttp
        from aiohttp import web
        from hems_rules.errors import ConfigurationError
        from hems_rules.ruleset.rules import HttpSource
        from hems_rules.sources.http import HttpPoller
        from tests.web_server import serving

        async def redirect(request):
            raise web.HTTPFound("https://127.0.0.1:1/t")

        async def main():
            app = web.Application()
            app.router.add_get("/t", redirect)
            async with serving(app) as port, aiohttp.ClientSession() as session:
                source = HttpSource(url=f"http://127.0.0.1:{port}/t")
                poller = HttpPoller("tank", source, session, lambda *_: None)
                await poller.poll()
            assert isinstance(poller.health.error, ConfigurationError), poller.health.error
            print(poller.health.error)

        asyncio.run(main())
        """
    )
    assert "redirects to https://" in out and "write that URL in the rules" in out


async def test_rules_that_need_tls_later_restart_run_with_it(
    dbus_daemon: DbusDaemon, tmp_path: Path
) -> None:
    """A reload that adds an https:// URL stops `run` (exit 1, releasing its relays);
    started again, as daemontools does, it loads TLS and runs the new rules."""
    rules = tmp_path / "rules"
    rules.mkdir()
    log = tmp_path / "log" / "info.log"
    site = "site: {phases: 1, battery_reservation: 0, web: {enabled: false},"
    site += " history: {enabled: false}}\n"

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hems_rules.cli", "run", "--rules", str(rules),
            "--day-state", str(tmp_path / "day-state.json"), "--bus", dbus_daemon.address,
            "--log-dir", str(tmp_path / "log"), "--poll", "0.2s",
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    def said(text: str) -> bool:
        return log.exists() and text in log.read_text()

    async with (
        SimulatedSettings(dbus_daemon.address) as settings,
        SimulatedSystem(dbus_daemon.address) as system,
        EmulatedShelly() as device,
    ):
        system.update({"/Ac/PvOnGrid/L1/Power": 3500.0, "/Ac/Consumption/L1/Power": 500.0})
        consumer = f"consumers: [{{id: h, shelly: {{host: 127.0.0.1, port: {device.port}}},"
        consumer += " power: 1000}]\n"
        (rules / "rules.yaml").write_text(site + consumer)
        process = await start()
        try:
            await wait_until(lambda: "/Settings/HEMS/Mode" in settings.items, timeout=20)
            settings.set("/Settings/HEMS/Mode", 1)
            await wait_until(lambda: device.switches[0].output, timeout=10, what="relay on")
            assert said("TLS left out: no rule needs it")
            https = "variables: {tank: {http: {url: 'https://127.0.0.1:1/t', json: v}}}\n"
            (rules / "rules.yaml").write_text(site + https + consumer)
            assert await asyncio.wait_for(process.wait(), 15) == 1
            assert said(
                "stopping because the new rules need TLS for the https:// URL of variable "
                "tank, which this process left out"
            )
            assert not device.switches[0].output, "released on the way out"
            process = await start()
            await wait_until(lambda: device.switches[0].output, timeout=20, what="relay on")
            assert said("TLS loaded for the https:// URL of variable tank")
            process.terminate()
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
