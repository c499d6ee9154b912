"""`deletion-worker dlq list|replay|purge`: the operators' dead-letter tools."""

from __future__ import annotations

import click
from rich.table import Table

from worker.amqp import Channel, Publisher, Topology
from worker.cli import common
from worker.ops import dlq
from worker.ops.progress import progress
from worker.settings import Settings


def _topology(loaded: Settings) -> Topology:
    return Topology.for_settings(loaded, common.products(loaded).names)


def _queues(loaded: Settings, queue: str | None) -> list[str]:
    return dlq.dead_queues(_topology(loaded), queue)


@click.group("dlq")
def dlq_group() -> None:
    """Dead-letter queues: list, replay after fixing the cause, purge."""


@dlq_group.command("list")
@click.argument("queue", required=False)
@click.option("--limit", default=1000, show_default=True, help="At most this many per queue.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines for scripts.")
def list_command(queue: str | None, limit: int, as_json: bool) -> None:
    """Show dead messages (reason, origin, age; never identity values). QUEUE: any queue name
    of the deployment (its dead-letter queue is meant); all dead-letter queues by default."""
    loaded = common.settings()
    queues = _queues(loaded, queue)

    async def go() -> list[dlq.DeadMessage]:
        connection = await common.connect_broker(loaded)
        try:
            channel: Channel = await connection.channel()
            return await dlq.list_dead(channel, queues, limit)
        finally:
            await connection.close()

    found = common.run(go())
    if as_json:
        for item in found:
            common.echo_json(item.as_dict())
        return
    table = Table("queue", "message id", "age", "size", "identities", "reason")
    for item in found:
        age = "?" if item.age_seconds is None else _human_age(item.age_seconds)
        table.add_row(
            item.queue, item.message_id or "-", age, str(item.size), str(item.identity_count or "-"), item.reason
        )
    common.console().print(table)
    click.echo(f"{len(found)} dead message(s)")


def _human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@dlq_group.command("replay")
@click.argument("queue", required=False)
@click.option("--id", "message_ids", multiple=True, help="Only the message with this id; repeatable.")
def replay_command(queue: str | None, message_ids: tuple[str, ...]) -> None:
    """Put dead messages back on their origin queue for another try (after fixing the cause)."""
    loaded = common.settings()
    queues = _queues(loaded, queue)

    async def go() -> int:
        connection = await common.connect_broker(loaded)
        try:
            channel = await connection.channel()
            publisher = await Publisher.open(connection, confirm_timeout=loaded.confirm_timeout)
            with progress(None, "replaying dead letters") as advance:
                return await dlq.replay_dead(
                    channel, publisher, queues, message_ids=set(message_ids) or None, advance=advance
                )
        finally:
            await connection.close()

    common.echo_json({"replayed": common.run(go())})


@dlq_group.command("purge")
@click.argument("queue", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(queue: str | None, yes: bool) -> None:
    """Delete dead messages for good."""
    loaded = common.settings()
    queues = _queues(loaded, queue)
    if not yes:
        click.confirm(f"Purge {', '.join(queues)}?", abort=True)

    async def go() -> int:
        connection = await common.connect_broker(loaded)
        try:
            return await dlq.purge_dead(await connection.channel(), queues)
        finally:
            await connection.close()

    common.echo_json({"purged": common.run(go())})
