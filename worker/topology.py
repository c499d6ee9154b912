"""The broker topology, declared in exactly one place.

Every consumer queue X comes with two companions, derived by `QueueNames`:
  X.retry  holds a message for its backoff delay (per-message TTL), then dead-letters
           it back into X through the default exchange;
  X.dead   keeps what could not be processed, with the reason in the
           `x-deletion-error` header (and RabbitMQ's own x-death when the broker put
           it there after too many redeliveries).
All queues are quorum queues: replicated, durable, with a delivery limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from pamqp.common import FieldTable

ERROR_HEADER = "x-deletion-error"
ATTEMPT_HEADER = "x-deletion-attempt"
ORIGIN_HEADER = "x-deletion-origin-queue"
DEAD_AT_HEADER = "x-deletion-dead-at"


@dataclass(frozen=True)
class QueueNames:
    """Main, retry and dead-letter queue names of one consumer queue."""

    main: str

    @property
    def retry(self) -> str:
        return f"{self.main}.retry"

    @property
    def dead(self) -> str:
        return f"{self.main}.dead"

    def all(self) -> tuple[str, str, str]:
        return (self.main, self.retry, self.dead)


@dataclass(frozen=True)
class QuorumQueueArguments:
    """Typed `x-` arguments of a quorum queue."""

    dead_letter_routing_key: str | None = None
    delivery_limit: int | None = None
    overflow: Literal["drop-head", "reject-publish"] | None = None
    dead_letter_strategy: Literal["at-most-once", "at-least-once"] | None = None
    extra: FieldTable = field(default_factory=dict)

    def to_arguments(self) -> FieldTable:
        arguments: FieldTable = {"x-queue-type": "quorum"}
        if self.dead_letter_routing_key is not None:
            arguments["x-dead-letter-exchange"] = ""
            arguments["x-dead-letter-routing-key"] = self.dead_letter_routing_key
        if self.delivery_limit is not None:
            arguments["x-delivery-limit"] = self.delivery_limit
        if self.overflow is not None:
            arguments["x-overflow"] = self.overflow
        if self.dead_letter_strategy is not None:
            arguments["x-dead-letter-strategy"] = self.dead_letter_strategy
        arguments.update(self.extra)
        return arguments


@dataclass(frozen=True)
class Topology:
    """Names of everything this deployment declares, derived from a prefix and the products."""

    prefix: str
    products: tuple[str, ...]

    @property
    def requests(self) -> QueueNames:
        return QueueNames(f"{self.prefix}.requests")

    @property
    def acks(self) -> QueueNames:
        return QueueNames(f"{self.prefix}.acks")

    @property
    def products_exchange(self) -> str:
        return f"{self.prefix}.products"

    def product(self, name: str) -> QueueNames:
        return QueueNames(f"{self.prefix}.product.{name}")

    def consumer_queues(self) -> list[QueueNames]:
        return [self.requests, *(self.product(p) for p in self.products), self.acks]

    def all_queue_names(self) -> list[str]:
        return [name for queues in self.consumer_queues() for name in queues.all()]

    def find(self, queue: str) -> QueueNames | None:
        """The consumer queue that `queue` (a main, retry or dead queue name) belongs to."""
        for queues in self.consumer_queues():
            if queue in queues.all():
                return queues
        return None


def main_queue_arguments(names: QueueNames, delivery_limit: int) -> QuorumQueueArguments:
    return QuorumQueueArguments(
        dead_letter_routing_key=names.dead,
        delivery_limit=delivery_limit,
        # at-least-once dead-lettering needs reject-publish; it makes the broker keep a
        # message until the dead-letter queue has confirmed it.
        overflow="reject-publish",
        dead_letter_strategy="at-least-once",
    )


def retry_queue_arguments(names: QueueNames) -> QuorumQueueArguments:
    # An expired message goes back to the main queue for another attempt.
    return QuorumQueueArguments(dead_letter_routing_key=names.main)


async def declare(channel: AbstractChannel, topology: Topology, delivery_limit: int) -> AbstractExchange:
    """Declare every exchange, queue and binding (idempotent); returns the products exchange."""
    exchange = await channel.declare_exchange(topology.products_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    for names in topology.consumer_queues():
        await channel.declare_queue(names.dead, durable=True, arguments=QuorumQueueArguments().to_arguments())
        await channel.declare_queue(names.retry, durable=True, arguments=retry_queue_arguments(names).to_arguments())
        await channel.declare_queue(
            names.main, durable=True, arguments=main_queue_arguments(names, delivery_limit).to_arguments()
        )
    for product in topology.products:
        queue = await channel.get_queue(topology.product(product).main, ensure=False)
        await queue.bind(exchange, routing_key=product)
    return exchange


async def delete(channel: AbstractChannel, topology: Topology) -> None:
    """Remove everything `declare` made (tests and the bench clean up with this)."""
    for name in topology.all_queue_names():
        await channel.queue_delete(name)
    await channel.exchange_delete(topology.products_exchange)
