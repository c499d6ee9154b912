"""The broker's real ceiling: what RabbitMQ itself carries on this host with the fastest
client the project has, so that "pipeline / ceiling" compares against the broker and not
against a slow client.

Publishing goes through the project's batched publisher (`worker.amqp.Publisher`: one
buffer per batch, every confirm of several batches outstanding at once); consuming uses a
large prefetch and acknowledges with `multiple`, one ack frame per ACK_EVERY deliveries.
The plain aio-pika figures of `worker.bench.ceiling` stay in the report beside these."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass

from worker.amqp import AmqpConsumerChannel, Delivery, Outgoing, Publisher, connect
from worker.bench.ceiling import STALL_SECONDS, CeilingStalledError, request_sized_body

BATCH = 1000
BATCHES_IN_FLIGHT = 4  # 4,000 confirms outstanding: more did not publish faster here
PREFETCH = 4000
ACK_EVERY = 500


@dataclass(frozen=True)
class RealCeiling:
    published_per_s: float
    consumed_per_s: float

    @property
    def per_s(self) -> float:
        """A request is published once and consumed once: the slower side bounds the pipeline."""
        return min(self.published_per_s, self.consumed_per_s)


async def _publish(publisher: Publisher, queue: str, payload: bytes, messages: int) -> float:
    window = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def one_batch(start: int) -> None:
        async with window:
            batch = [
                Outgoing(routing_key=queue, body=payload, message_id=f"c{i}")
                for i in range(start, min(start + BATCH, messages))
            ]
            await asyncio.wait_for(publisher.publish(batch), STALL_SECONDS)

    started = time.perf_counter()
    await asyncio.gather(*(one_batch(start) for start in range(0, messages, BATCH)))
    return messages / (time.perf_counter() - started)


async def _consume(consumer: AmqpConsumerChannel, queue: str, messages: int) -> float:
    received = 0
    done = asyncio.Event()
    acks: set[asyncio.Task[None]] = set()

    def on_delivery(delivery: Delivery) -> None:
        nonlocal received
        received += 1
        if received % ACK_EVERY == 0 or received >= messages:
            task = asyncio.create_task(consumer.ack(delivery.delivery_tag, multiple=True))
            acks.add(task)
            task.add_done_callback(acks.discard)
        if received >= messages:
            done.set()

    await consumer.set_window(PREFETCH)
    started = time.perf_counter()
    await consumer.consume(queue, on_delivery)
    while not done.is_set():
        before = received
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), STALL_SECONDS)
        if received == before and not done.is_set():
            raise CeilingStalledError(f"no message for {STALL_SECONDS:g} s after {received} of {messages}")
    await asyncio.gather(*acks)
    elapsed = time.perf_counter() - started
    await consumer.cancel()
    return messages / elapsed


async def measure_real_ceiling(amqp_url: str, messages: int) -> RealCeiling:
    payload = request_sized_body()
    queue = f"bench-real-ceiling-{secrets.token_hex(4)}"
    connection = await connect(amqp_url, name="deletion-worker bench ceiling")
    try:
        setup = await connection.channel()
        await setup.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        try:
            publisher = await Publisher.open(connection)
            published = await _publish(publisher, queue, payload, messages)
            await publisher.close()
            consumer = await AmqpConsumerChannel.open(connection, asyncio.Event())
            try:
                consumed = await _consume(consumer, queue, messages)
            finally:
                await consumer.close()
        finally:
            # Also after a failure or Ctrl-C: the queue is the bench's own.
            with contextlib.suppress(Exception):
                cleanup = await connection.channel()
                await cleanup.queue_delete(queue)
    finally:
        await connection.close()
    return RealCeiling(round(published, 1), round(consumed, 1))
