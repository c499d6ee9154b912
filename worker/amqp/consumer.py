"""Consuming: deliveries as a project-owned type, and the few calls a role makes on a
consumer channel (window, consume, cancel, ack).

Deliveries are read at the aiormq level (aio-pika's transport): building aio-pika's
IncomingMessage for every delivery was a tenth of the worker's CPU time. Roles see only
`Delivery` and `ConsumerChannel`, so the tests drive them with a fake channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiormq
import aiormq.abc
import structlog
from aio_pika.abc import AbstractConnection
from pamqp import commands as spec

from worker.amqp.topology import ATTEMPT_HEADER, BROKER_DELIVERY_COUNT_HEADER
from worker.errors import describe

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    body: bytes
    delivery_tag: int
    message_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    redelivered: bool = False

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def attempt(self) -> int:
        """How many times this service retried the message before (0 on the first try)."""
        value = self.headers.get(ATTEMPT_HEADER, 0)
        return value if isinstance(value, int) and value >= 0 else 0

    @property
    def broker_deliveries(self) -> int:
        """How often the broker delivered it before without an ack (quorum queues count)."""
        value = self.headers.get(BROKER_DELIVERY_COUNT_HEADER, 0)
        return value if isinstance(value, int) and value >= 0 else 0


OnDelivery = Callable[[Delivery], None]


class ConsumerChannel(Protocol):
    """What a consuming role needs of its channel."""

    @property
    def cancelled_by_broker(self) -> asyncio.Event: ...

    async def set_window(self, count: int) -> None: ...

    async def consume(self, queue: str, on_delivery: OnDelivery) -> None: ...

    async def cancel(self) -> None: ...

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None: ...

    async def requeue(self, delivery_tag: int) -> None: ...

    async def close(self) -> None: ...


def _delivery(message: aiormq.abc.DeliveredMessage) -> Delivery:
    properties = message.header.properties
    tag = message.delivery_tag
    assert tag is not None
    return Delivery(
        body=message.body,
        delivery_tag=tag,
        message_id=properties.message_id,
        headers=properties.headers or {},
        redelivered=bool(message.redelivered),
    )


class AmqpConsumerChannel:
    """A channel of its own for one consumer. `lost` (the session's) is set when the channel
    closes by anything but its own `close()`: the broker or the connection closed it."""

    def __init__(self, underlay: aiormq.Channel, lost: asyncio.Event) -> None:
        self._underlay = underlay
        self._lost = lost
        self._tag: str | None = None
        self._queue = ""
        self._closing = False
        self._cancelled_by_broker = asyncio.Event()
        underlay.on_consumer_cancel_callbacks.add(self._on_broker_cancel)

    @classmethod
    async def open(cls, connection: AbstractConnection, lost: asyncio.Event) -> AmqpConsumerChannel:
        channel = await connection.channel()
        underlay = await channel.get_underlay_channel()
        assert isinstance(underlay, aiormq.Channel)
        consumer = cls(underlay, lost)
        channel.close_callbacks.add(consumer._on_closed)
        return consumer

    def _on_closed(self, *_args: object) -> None:
        if not self._closing:
            self._lost.set()

    @property
    def cancelled_by_broker(self) -> asyncio.Event:
        return self._cancelled_by_broker

    def _on_broker_cancel(self, frame: spec.Basic.Cancel) -> None:
        # The queue was deleted (or its leader went away): nothing more will come on it.
        if frame.consumer_tag == self._tag:
            log.warning("consumer_cancelled_by_broker", queue=self._queue)
            self._tag = None
            self._cancelled_by_broker.set()

    async def set_window(self, count: int) -> None:
        await self._underlay.basic_qos(prefetch_count=count)

    async def consume(self, queue: str, on_delivery: OnDelivery) -> None:
        async def receive(message: aiormq.abc.DeliveredMessage) -> None:
            on_delivery(_delivery(message))

        self._queue = queue
        consume_ok = await self._underlay.basic_consume(queue, receive)
        self._tag = consume_ok.consumer_tag

    async def cancel(self) -> None:
        """No more deliveries; those already sent stay ours until acked or the channel closes."""
        tag, self._tag = self._tag, None
        if tag is not None and not self._underlay.is_closed:
            try:
                await self._underlay.basic_cancel(tag)
            except Exception as error:  # noqa: BLE001 - the channel may already be gone
                log.debug("consumer_cancel_failed", queue=self._queue, error=describe(error))

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        await self._underlay.basic_ack(delivery_tag, multiple=multiple)

    async def requeue(self, delivery_tag: int) -> None:
        """Give one delivery back to its queue (counted by RabbitMQ 3.x quorum queues:
        for the rare case where handing it back failed)."""
        await self._underlay.basic_nack(delivery_tag, multiple=False, requeue=True)

    async def close(self) -> None:
        self._closing = True
        if not self._underlay.is_closed:
            await self._underlay.close()
