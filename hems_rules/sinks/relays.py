"""Every consumer's relay, whichever kind: a Shelly over HTTP or a `dbus:` output.

The engine loop and the switch pane command relays here by consumer id; what each
relay reports goes to the same `report` callback (the inputs of the next cycle).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Self

from hems_rules.dbus.client import BusClient
from hems_rules.health import Faults
from hems_rules.ruleset.rules import Consumer
from hems_rules.shelly.relays import Address, Report, ShellyRelays, direct
from hems_rules.sinks.dbus_relays import DbusRelays


class Relays:
    """Shelly and D-Bus relay workers behind one interface (an async context manager)."""

    def __init__(
        self,
        report: Report,
        client: BusClient,
        poll_interval: float = 5.0,
        address: Address = direct,
        *,
        faults: Faults | None = None,
    ) -> None:
        self.shelly = ShellyRelays(report, poll_interval, address=address, faults=faults)
        self.dbus = DbusRelays(client, report, faults=faults)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.shelly)
            await stack.enter_async_context(self.dbus)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def sync(self, consumers: Iterable[Consumer]) -> None:
        """Workers for new or changed consumers; those no longer in the rules stop."""
        consumers = list(consumers)
        self.shelly.sync(consumers)
        self.dbus.sync(consumers)

    def command(self, consumer_id: str, on: bool) -> None:
        """Switch a consumer's relay; its worker reports what the relay then does."""
        (self.dbus if consumer_id in self.dbus else self.shelly).command(consumer_id, on)

    async def release(self, consumer_ids: Iterable[str]) -> None:
        """Shutdown: stop every worker, then switch these relays off."""
        ids = list(consumer_ids)
        await asyncio.gather(self.shelly.release(ids), self.dbus.release(ids))
