"""Retry tiers on a real broker: a short wait never queues behind a long one, and a
message comes back to its own queue with its headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from worker.amqp import Outgoing, Publisher, Topology, connect, topology
from worker.amqp.admin import take
from worker.settings import Settings


async def test_a_short_retry_is_not_held_behind_a_long_one(make_settings: Callable[..., Settings]) -> None:
    """Before: one retry queue per consumer queue with per-message TTLs, which expire only
    at the head of the queue: a 0.5 s retry published after an 8 s one came back at 8 s."""
    settings = make_settings("", retry_base_ms=100, retry_cap_ms=1600)
    tiers = Topology.for_settings(settings, [])
    connection = await connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await topology.declare(connection, tiers, settings.delivery_limit)
        publisher = await Publisher.open(connection)
        origin = tiers.requests.main
        for delay, body in ((1600, b"long"), (100, b"short")):
            await publisher.publish(
                [Outgoing(exchange=tiers.retry_tier(delay), routing_key=origin, body=body, headers={"h": delay})]
            )
        arrived: list[tuple[bytes, object]] = []
        deadline = time.monotonic() + 20
        while len(arrived) < 2:
            assert time.monotonic() < deadline, f"only {arrived} came back"
            for message in await take(channel, origin, 10):
                arrived.append((message.body, message.headers["h"]))
                await message.ack()
            await asyncio.sleep(0.02)
        assert arrived == [(b"short", 100), (b"long", 1600)]
    finally:
        await topology.delete(await connection.channel(), tiers)
        await connection.close()
