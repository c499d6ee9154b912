"""Small waits shared by the fault tests."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aio_pika
import aiormq
import asyncpg

from worker.amqp import Topology, connect
from worker.amqp.admin import queue_depths
from worker.producer import Producer, build_request


async def consumer_counts(amqp_url: str, queues: list[str]) -> dict[str, int]:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        counts = {}
        for queue in queues:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                counts[queue] = declared.declaration_result.consumer_count or 0
            except aiormq.exceptions.ChannelNotFoundEntity:
                counts[queue] = 0
        return counts
    finally:
        await connection.close()


async def wait_for_consumers(amqp_url: str, queues: list[str], timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = await consumer_counts(amqp_url, queues)
        except (OSError, aiormq.exceptions.AMQPError):
            counts = {}
        if counts and all(counts.values()):
            return counts
        await asyncio.sleep(0.3)
    raise TimeoutError(f"queues without a consumer: {[q for q, n in counts.items() if not n] or queues}")


async def publish_many(amqp_url: str, prefix: str, project_key: str, count: int, tag: str) -> list[str]:
    """Publish `count` single-identity requests; returns the ids the broker confirmed."""
    requests = [build_request(project_key, [("userId", f"{tag}-{i}")]) for i in range(count)]
    async with Producer(amqp_url, prefix) as producer:
        for start in range(0, count, 500):
            await producer.publish(requests[start : start + 500])
    return [request.request_id for request in requests]


def log_events(logs: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of this event name."""
    found = []
    for line in logs.splitlines():
        if f'"{event}"' in line:
            try:
                decoded = json.loads(line)
            except ValueError:
                continue
            if decoded.get("event") == event:
                found.append(decoded)
    return found


async def dead_letter_counts(amqp_url: str, topology: Topology) -> dict[str, int]:
    """Messages waiting in every dead-letter queue of the topology."""
    connection = await connect(amqp_url)
    try:
        depths = await queue_depths(connection, [names.dead for names in topology.consumer_queues()])
    finally:
        await connection.close()
    return {depth.name: depth.ready or 0 for depth in depths}


async def wait_until(pool: asyncpg.Pool, query: str, timeout: float = 60) -> None:
    """Until the query answers true (a stage is busy, a backlog drained)."""
    deadline = time.monotonic() + timeout
    while not await pool.fetchval(query):
        assert time.monotonic() < deadline, f"never true: {query}"
        await asyncio.sleep(0.02)
