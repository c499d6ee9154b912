"""The broker's own ceiling on this machine: plain aio-pika, persistent messages of the
size of a one-identity request, publisher confirms with a window of outstanding
publishes, then one consumer with a prefetch acking each message.

Publishing and consuming are measured one after the other, each with the machine to
itself, so each number is the most the broker and one Python client can do."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import aio_pika

from worker.producer import build_request

CONFIRM_WINDOW = 1000


@dataclass(frozen=True)
class Ceiling:
    messages: int
    message_bytes: int
    published_per_s: float
    consumed_per_s: float


async def measure_ceiling(amqp_url: str, messages: int) -> Ceiling:
    body = build_request("3sWXSsqHgSKnE87YkNJK", [("userId", "someone@example.com")]).model_dump_json(by_alias=True)
    payload = body.encode()
    queue_name = f"bench-ceiling-{secrets.token_hex(4)}"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        started = time.perf_counter()
        for start in range(0, messages, CONFIRM_WINDOW):
            count = min(CONFIRM_WINDOW, messages - start)
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue_name,
                    )
                    for _ in range(count)
                )
            )
        published = messages / (time.perf_counter() - started)

        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=CONFIRM_WINDOW)
        queue = await consumer_channel.get_queue(queue_name)
        received = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= messages:
                done.set()

        started = time.perf_counter()
        tag = await queue.consume(on_message)
        await done.wait()
        consumed = messages / (time.perf_counter() - started)
        await queue.cancel(tag)
        await channel.queue_delete(queue_name)
    finally:
        await connection.close()
    return Ceiling(messages, len(payload), round(published, 1), round(consumed, 1))
