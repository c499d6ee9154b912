"""Dead letters hold identity values: a dead-letter queue keeps them no longer than its
retention; one made by an older release (no retention) is left working, and said so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import structlog

from worker.amqp import Outgoing, Publisher, Topology, connect, topology
from worker.amqp.admin import queue_depths
from worker.amqp.topology import QuorumQueueArguments
from worker.settings import Settings


async def test_dead_letters_expire_after_the_retention(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("", dead_letter_retention=timedelta(seconds=1))
    names = Topology.for_settings(settings, [])
    connection = await connect(settings.amqp_url)
    try:
        await topology.declare(connection, names, settings.delivery_limit)
        publisher = await Publisher.open(connection)
        await publisher.publish([Outgoing(routing_key=names.requests.dead, body=b'{"identities": ["someone"]}')])
        deadline = time.monotonic() + 20
        while (await queue_depths(connection, [names.requests.dead]))[0].ready:
            assert time.monotonic() < deadline, "the dead letter outlived its retention"
            await asyncio.sleep(0.2)
    finally:
        await topology.delete(await connection.channel(), names)
        await connection.close()


async def test_a_dead_letter_queue_of_an_older_release_is_kept_and_reported(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings("", dead_letter_retention=timedelta(days=7))
    names = Topology.for_settings(settings, [])
    connection = await connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        # As an older release declared it: no retention.
        await channel.declare_queue(names.acks.dead, durable=True, arguments=QuorumQueueArguments().to_arguments())
        with structlog.testing.capture_logs() as logs:
            await topology.declare(connection, names, settings.delivery_limit)
        warnings = [entry for entry in logs if entry["event"] == "dead_letter_queue_without_retention"]
        assert [entry["queue"] for entry in warnings] == [names.acks.dead]
        assert "rabbitmqctl set_policy" in warnings[0]["fix"]
        depths = await queue_depths(connection, [name for queues in names.consumer_queues() for name in queues.all()])
        assert all(depth.exists for depth in depths)  # everything else was declared after it
    finally:
        await topology.delete(await connection.channel(), names)
        await connection.close()
