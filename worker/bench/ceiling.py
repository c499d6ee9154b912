"""The broker's own ceiling on this machine: plain aio-pika, persistent messages of the
size of a one-identity request on a quorum queue (like the real ones), publisher
confirms with a sliding window of outstanding publishes, then one consumer with a
prefetch acking each message.

Publishing and consuming are measured one after the other, each with the machine to
itself, so each number is the most the broker and one Python client can do."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from worker.producer import build_request

CONFIRM_WINDOW = 1000
PREFETCH = 1000
# A publish unconfirmed or a consumer without a message this long means the broker is in
# trouble (or the queue went away); the bench stops instead of hanging.
STALL_SECONDS = 30.0


class CeilingStalledError(Exception):
    pass


@dataclass(frozen=True)
class Ceiling:
    messages: int
    message_bytes: int
    published_per_s: float
    consumed_per_s: float


def request_sized_body() -> bytes:
    """A real one-identity request, so the message size is the pipeline's."""
    request = build_request("3sWXSsqHgSKnE87YkNJK", [("userId", "someone@example.com")])
    return request.model_dump_json(by_alias=True).encode()


async def _publish(channel: AbstractChannel, queue_name: str, payload: bytes, messages: int) -> float:
    """Keeps CONFIRM_WINDOW publishes awaiting their confirm at all times; returns msg/s."""
    window = asyncio.Semaphore(CONFIRM_WINDOW)
    in_flight: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def publish_one() -> None:
        message = aio_pika.Message(payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=queue_name, timeout=STALL_SECONDS)

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        window.release()
        error = None if task.cancelled() else task.exception()
        if error is not None:
            failures.append(error)

    started = time.perf_counter()
    try:
        for _ in range(messages):
            await window.acquire()
            if failures:
                raise failures[0]
            task = asyncio.create_task(publish_one())
            in_flight.add(task)
            task.add_done_callback(finished)
        await asyncio.gather(*in_flight)
    finally:
        for task in in_flight:
            task.cancel()
    if failures:
        raise failures[0]
    return messages / (time.perf_counter() - started)


async def _consume(channel: AbstractChannel, queue_name: str, messages: int) -> float:
    """One consumer, acking each message as it comes; returns msg/s."""
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.get_queue(queue_name)
    received = 0
    done = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal received
        await message.ack()
        received += 1
        if received >= messages:
            done.set()

    started = time.perf_counter()
    tag = await queue.consume(on_message)
    try:
        while not done.is_set():
            before = received
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), STALL_SECONDS)
            if received == before and not done.is_set():
                raise CeilingStalledError(f"no message for {STALL_SECONDS:g} s after {received} of {messages}")
        elapsed = time.perf_counter() - started
    finally:
        # Also when interrupted: unsubscribed before the queue is deleted, not cancelled by it.
        with contextlib.suppress(Exception):
            await queue.cancel(tag)
    return messages / elapsed


async def measure_ceiling(amqp_url: str, messages: int) -> Ceiling:
    payload = request_sized_body()
    queue_name = f"bench-ceiling-{secrets.token_hex(4)}"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        try:
            published = await _publish(channel, queue_name, payload, messages)
            consumed = await _consume(await connection.channel(), queue_name, messages)
        finally:
            # Also after a failure or Ctrl-C: the queue is the bench's own, nothing else uses it.
            with contextlib.suppress(Exception):
                cleanup = await connection.channel()
                await cleanup.queue_delete(queue_name)
    finally:
        await connection.close()
    return Ceiling(messages, len(payload), round(published, 1), round(consumed, 1))
