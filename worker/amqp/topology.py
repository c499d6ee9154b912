"""The broker topology, declared in exactly one place, and every name in it.

Every consumer queue X has a dead-letter queue X.dead: what could not be processed,
with the reason in the `x-deletion-error` header (and RabbitMQ's own x-death when the
broker put it there after too many deliveries). Dead letters hold identity values, so a
dead-letter queue keeps them DELETION_DEAD_LETTER_RETENTION at most (a queue-level
TTL). Queue arguments cannot change once a queue exists: a dead-letter queue made by an
older release keeps none, and the worker says how to give it one (a policy).

Retries wait in shared *retry tiers*: one queue per delay (`<prefix>.retry.<ms>ms`, a
queue-level TTL), each fed by a fanout exchange of the same name. A retry copy is
published to the tier's exchange with the origin queue as its routing key; when its
time is up the tier dead-letters it to the default exchange under that routing key, so
it lands back in its origin queue. A queue-level TTL expires messages in arrival order,
and every message in a tier waits equally long, so a short wait never queues behind a
long one (per-message TTLs in one queue did: a 0.5 s retry waited behind an 8 s one).
The move back is at-least-once (quorum queues, `reject-publish`): the tier keeps a
message until its origin queue has confirmed it.
All queues are quorum queues: replicated, durable, with a delivery limit.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import ChannelPreconditionFailed
from pamqp.common import FieldTable

from worker.settings import Settings

log = structlog.get_logger(__name__)

ERROR_HEADER = "x-deletion-error"
ATTEMPT_HEADER = "x-deletion-attempt"
ORIGIN_HEADER = "x-deletion-origin-queue"
DEAD_AT_HEADER = "x-deletion-dead-at"
BROKER_DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on redelivery

DEFAULT_RETRY_BASE_MS = 500
DEFAULT_RETRY_CAP_MS = 300_000


def retry_tiers(base_ms: int, cap_ms: int) -> tuple[int, ...]:
    """Delays of the retry tiers: doubling from `base_ms`, ending at `cap_ms`."""
    tiers: list[int] = []
    delay = max(1, base_ms)
    while delay < cap_ms:
        tiers.append(delay)
        delay *= 2
    tiers.append(max(1, cap_ms))
    return tuple(tiers)


@dataclass(frozen=True)
class QueueNames:
    """A consumer queue and its dead-letter queue."""

    main: str

    @property
    def dead(self) -> str:
        return f"{self.main}.dead"

    def all(self) -> tuple[str, str]:
        return (self.main, self.dead)


@dataclass(frozen=True)
class QuorumQueueArguments:
    """Typed `x-` arguments of a quorum queue."""

    dead_letter_routing_key: str | None = None
    dead_letter_to_default_exchange: bool = False
    delivery_limit: int | None = None
    message_ttl_ms: int | None = None
    overflow: Literal["drop-head", "reject-publish"] | None = None
    dead_letter_strategy: Literal["at-most-once", "at-least-once"] | None = None
    extra: FieldTable = field(default_factory=dict)

    def to_arguments(self) -> FieldTable:
        arguments: FieldTable = {"x-queue-type": "quorum"}
        if self.dead_letter_routing_key is not None or self.dead_letter_to_default_exchange:
            arguments["x-dead-letter-exchange"] = ""
        if self.dead_letter_routing_key is not None:
            arguments["x-dead-letter-routing-key"] = self.dead_letter_routing_key
        if self.delivery_limit is not None:
            arguments["x-delivery-limit"] = self.delivery_limit
        if self.message_ttl_ms is not None:
            arguments["x-message-ttl"] = self.message_ttl_ms
        if self.overflow is not None:
            arguments["x-overflow"] = self.overflow
        if self.dead_letter_strategy is not None:
            arguments["x-dead-letter-strategy"] = self.dead_letter_strategy
        arguments.update(self.extra)
        return arguments


@dataclass(frozen=True)
class Topology:
    """Names of everything this deployment declares, derived from a prefix, the products
    and the retry delays."""

    prefix: str
    products: tuple[str, ...]
    retry_delays_ms: tuple[int, ...] = retry_tiers(DEFAULT_RETRY_BASE_MS, DEFAULT_RETRY_CAP_MS)
    dead_letter_ttl_ms: int | None = None  # None: dead letters are kept until purged

    @classmethod
    def for_settings(cls, settings: Settings, products: Sequence[str]) -> Topology:
        ttl = int(settings.dead_letter_retention.total_seconds() * 1000)
        return cls(
            settings.topology_prefix,
            tuple(products),
            retry_tiers(settings.retry_base_ms, settings.retry_cap_ms),
            ttl or None,
        )

    @property
    def requests(self) -> QueueNames:
        return QueueNames(f"{self.prefix}.requests")

    @property
    def acks(self) -> QueueNames:
        return QueueNames(f"{self.prefix}.acks")

    @property
    def webhooks(self) -> QueueNames:
        """Webhook deliveries given up (`.dead`) and replayed: the notify role makes each
        delivery it finds on the main queue again."""
        return QueueNames(f"{self.prefix}.webhooks")

    @property
    def products_exchange(self) -> str:
        return f"{self.prefix}.products"

    @property
    def events_exchange(self) -> str:
        """The topic exchange of lifecycle events (schemas.events): subscribers bind their
        own queues to it."""
        return f"{self.prefix}.events"

    @property
    def due_channel(self) -> str:
        """The Postgres LISTEN/NOTIFY channel on which new due jobs wake a dispatcher."""
        return f"{self.prefix}.due"

    def product(self, name: str) -> QueueNames:
        return QueueNames(f"{self.prefix}.product.{name}")

    def retry_tier(self, delay_ms: int) -> str:
        """The exchange (and queue) of the retry tier with this delay."""
        return f"{self.prefix}.retry.{delay_ms}ms"

    def retry_tier_names(self) -> list[str]:
        return [self.retry_tier(delay) for delay in self.retry_delays_ms]

    def choose_retry_tier(self, bound_ms: int) -> int:
        """A tier for a retry whose backoff bound is `bound_ms`: one of the tiers between
        an eighth of the bound and the bound, at random (the jitter), or the nearest."""
        fitting = [d for d in self.retry_delays_ms if bound_ms / 8 <= d <= bound_ms]
        if fitting:
            return random.choice(fitting)
        below = [d for d in self.retry_delays_ms if d <= bound_ms]
        return below[-1] if below else self.retry_delays_ms[0]

    def consumer_queues(self) -> list[QueueNames]:
        return [self.requests, *(self.product(p) for p in self.products), self.acks, self.webhooks]

    def all_queue_names(self) -> list[str]:
        return [name for queues in self.consumer_queues() for name in queues.all()] + self.retry_tier_names()

    def find(self, queue: str) -> QueueNames | None:
        """The consumer queue that `queue` (a main or dead-letter queue name) belongs to."""
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


def retry_tier_arguments(delay_ms: int) -> QuorumQueueArguments:
    # No dead-letter routing key: an expired message keeps its own (the origin queue).
    return QuorumQueueArguments(
        dead_letter_to_default_exchange=True,
        message_ttl_ms=delay_ms,
        overflow="reject-publish",
        dead_letter_strategy="at-least-once",
    )


def dead_queue_arguments(ttl_ms: int | None) -> QuorumQueueArguments:
    return QuorumQueueArguments(message_ttl_ms=ttl_ms)


DEAD_LETTER_POLICY = (
    "rabbitmqctl set_policy --apply-to queues deletion-dead-letters '^<prefix>\\..*\\.dead$'"
    " '{\"message-ttl\": <DELETION_DEAD_LETTER_RETENTION in ms>}'"
)


async def _declare_dead_queue(
    connection: AbstractConnection, channel: AbstractChannel, name: str, ttl_ms: int | None
) -> AbstractChannel:
    """Declare a dead-letter queue with its retention. One made earlier with other
    arguments is left as it is; a failed declare closes the channel, so a new one is returned."""
    try:
        await channel.declare_queue(name, durable=True, arguments=dead_queue_arguments(ttl_ms).to_arguments())
    except ChannelPreconditionFailed:
        log.warning("dead_letter_queue_without_retention", queue=name, fix=DEAD_LETTER_POLICY)
        channel = await connection.channel()
    return channel


async def declare(connection: AbstractConnection, topology: Topology, delivery_limit: int) -> None:
    """Declare every exchange, queue and binding (idempotent)."""
    channel = await connection.channel()
    await channel.declare_exchange(topology.products_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    await channel.declare_exchange(topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    for delay in topology.retry_delays_ms:
        name = topology.retry_tier(delay)
        tier = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(name, durable=True, arguments=retry_tier_arguments(delay).to_arguments())
        await queue.bind(tier)
    for names in topology.consumer_queues():
        channel = await _declare_dead_queue(connection, channel, names.dead, topology.dead_letter_ttl_ms)
        await channel.declare_queue(
            names.main, durable=True, arguments=main_queue_arguments(names, delivery_limit).to_arguments()
        )
    exchange = await channel.get_exchange(topology.products_exchange, ensure=False)
    for product in topology.products:
        queue = await channel.get_queue(topology.product(product).main, ensure=False)
        await queue.bind(exchange, routing_key=product)
    await channel.close()


async def delete(channel: AbstractChannel, topology: Topology) -> None:
    """Remove everything `declare` made (tests and the bench clean up with this)."""
    for name in topology.all_queue_names():
        await channel.queue_delete(name)
    for name in topology.retry_tier_names():
        await channel.exchange_delete(name)
    await channel.exchange_delete(topology.products_exchange)
    await channel.exchange_delete(topology.events_exchange)
