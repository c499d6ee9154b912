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
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec

from worker import metrics

JSON = "application/json"
PERSISTENT = 2  # AMQP delivery mode: written to disk by the broker


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


class PublishRefusedError(Exception):
    """The broker nacked a message: it did not take responsibility for it."""


class Publisher:
    """Publishes persistent messages on a confirm channel, many confirms outstanding at once.

    Publishing goes through the channel's aiormq layer (aio-pika's transport): building an
    aio-pika Message per publish cost a fifth of the publishing throughput.
    """

    def __init__(self, channel: AbstractChannel, underlay: aiormq.Channel) -> None:
        self._channel = channel
        self._underlay = underlay

    @classmethod
    async def open(cls, connection: AbstractConnection) -> Publisher:
        # on_return_raises: an unroutable message (no such queue) is an error, not a silent drop.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        underlay = await channel.get_underlay_channel()
        # The concrete channel: its basic_publish takes `wait`, the abstract one does not say so.
        assert isinstance(underlay, aiormq.Channel)
        return cls(channel, underlay)

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish all and wait until the broker confirmed every one; raises if any was refused
        (nacked, or returned as unroutable)."""
        if not messages:
            return
        sends = [
            self._underlay.basic_publish(
                item.body,
                exchange=item.exchange,
                routing_key=item.routing_key,
                properties=spec.Basic.Properties(
                    content_type=JSON,
                    delivery_mode=PERSISTENT,
                    headers=dict(item.headers) or None,
                    # The client matches a returned message to its publish by message id.
                    message_id=item.message_id or str(uuid.uuid4()),
                    expiration=str(item.expiration_ms) if item.expiration_ms is not None else None,
                    # No timestamp property: encoding and decoding it cost ~2% of the CPU
                    # per message on each side; dead letters carry their own time header.
                ),
                mandatory=True,
                # Not waiting for each frame to be written and drained: the broker's confirm
                # is what counts, and skipping the per-message drain made publishing ~7%
                # cheaper. Memory stays bounded: the caller holds these messages anyway.
                wait=False,
            )
            for item in messages
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        failure: BaseException | None = None
        for item, result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
            elif isinstance(result, spec.Basic.Nack):
                failure = failure or PublishRefusedError(f"broker refused a message for {item.routing_key}")
            else:
                metrics.MESSAGES_PUBLISHED.labels(item.queue_label or item.routing_key).inc()
        if failure is not None:
            raise failure

    async def close(self) -> None:
        if not self._channel.is_closed:
            await self._channel.close()
