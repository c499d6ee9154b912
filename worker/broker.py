"""RabbitMQ connections and publishing with confirms.

Connections here are plain (not aio-pika's "robust" kind): the worker's supervisor
reconnects and re-creates channels and consumers itself, so that after a broker restart
it is certain every consumer is back (robust connections have come back with none).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, HeadersType

from worker import metrics

JSON = "application/json"


async def connect(url: str, timeout: float = 10.0) -> AbstractConnection:
    return await aio_pika.connect(url, timeout=timeout, client_properties={"connection_name": "deletion-worker"})


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: to the default exchange (routing key = queue) or a named one."""

    routing_key: str
    body: bytes
    exchange: str = ""
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    expiration_ms: int | None = None
    queue_label: str | None = None  # for metrics; defaults to the routing key


class Publisher:
    """Publishes persistent messages on a confirm channel, many confirms outstanding at once."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._exchanges: dict[str, AbstractExchange] = {"": channel.default_exchange}

    @classmethod
    async def open(cls, connection: AbstractConnection) -> Publisher:
        # on_return_raises: an unroutable message (no such queue) is an error, not a silent drop.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return cls(channel)

    async def _exchange(self, name: str) -> AbstractExchange:
        if name not in self._exchanges:
            self._exchanges[name] = await self._channel.get_exchange(name, ensure=False)
        return self._exchanges[name]

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish all and wait until the broker confirmed every one; raises if any was refused
        (nacked, or returned as unroutable)."""
        if not messages:
            return
        sends = []
        for item in messages:
            exchange = await self._exchange(item.exchange)
            headers: HeadersType = dict(item.headers)
            message = aio_pika.Message(
                item.body,
                content_type=JSON,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=headers,
                # The client matches a returned message to its publish by message id.
                message_id=item.message_id or str(uuid.uuid4()),
                expiration=item.expiration_ms / 1000 if item.expiration_ms is not None else None,
            )
            sends.append(exchange.publish(message, routing_key=item.routing_key, mandatory=True))
        results = await asyncio.gather(*sends, return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        for item, result in zip(messages, results, strict=True):
            if not isinstance(result, BaseException):
                metrics.MESSAGES_PUBLISHED.labels(item.queue_label or item.routing_key).inc()
        if failures:
            raise failures[0]

    async def close(self) -> None:
        if not self._channel.is_closed:
            await self._channel.close()
