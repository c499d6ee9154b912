"""`deletion-worker queues`: every queue of the topology, its depth and consumers."""

from __future__ import annotations

import asyncio
import contextlib

import click
from rich.live import Live
from rich.table import Table

from worker.amqp import Topology
from worker.cli import common
from worker.ops.queues import QueueState, add_unacked, queue_states
from worker.settings import Settings


def _table(states: list[QueueState]) -> Table:
    table = Table("queue", "ready", "unacked", "consumers", "")
    for state in states:
        warning = state.warning
        table.add_row(
            state.name,
            "-" if state.ready is None else str(state.ready),
            "-" if state.unacked is None else str(state.unacked),
            "-" if state.consumers is None else str(state.consumers),
            f"[yellow]! {warning}[/yellow]" if warning else "",
        )
    return table


async def _collect(loaded: Settings, management_url: str | None) -> list[QueueState]:
    topology = Topology.for_settings(loaded, common.products(loaded).names)
    connection = await common.connect_broker(loaded)
    try:
        states = await queue_states(connection, topology)
    finally:
        await connection.close()
    if management_url:
        with contextlib.suppress(Exception):  # unacked counts are a bonus; the rest stands without them
            await add_unacked(states, management_url, loaded.broker_urls[0])
    return states


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="A JSON list for scripts.")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--management-url", help="RabbitMQ management API (http://user:pass@host:15672) for unacked counts.")
def queues_command(as_json: bool, watch: bool, interval: float, management_url: str | None) -> None:
    """Messages ready (and unacked), consumers, and warnings for every queue."""
    loaded = common.settings()
    if as_json:
        common.echo_json([state.as_dict() for state in common.run(_collect(loaded, management_url))])
        return
    if not watch:
        common.console().print(_table(common.run(_collect(loaded, management_url))))
        return

    async def refresh() -> None:
        with Live(_table(await _collect(loaded, management_url)), auto_refresh=False) as live:
            while True:
                await asyncio.sleep(interval)
                live.update(_table(await _collect(loaded, management_url)), refresh=True)

    with contextlib.suppress(KeyboardInterrupt):
        common.run(refresh())
