"""Test doubles of the broker side of a role: a publisher that records what it is given
and a consumer channel that records acks, so that the settle, retry, dead-letter and
hand-back rules are tested in milliseconds, without RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from worker.amqp import ConsumerChannel, Delivery, Outgoing, Publisher, PublishRefusedError, Topology
from worker.amqp.consumer import OnDelivery
from worker.amqp.topology import retry_tiers
from worker.roles.base import Session


@dataclass
class FakePublisher:
    published: list[Outgoing] = field(default_factory=list)
    fail_with: BaseException | None = None
    refuse_bodies: set[bytes] = field(default_factory=set)  # the broker nacks these
    refuse_containing: set[bytes] = field(default_factory=set)  # and those with these bytes in

    def _refused(self, message: Outgoing) -> bool:
        return message.body in self.refuse_bodies or any(part in message.body for part in self.refuse_containing)

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        failure = next((outcome for outcome in await self.publish_each(messages) if outcome is not None), None)
        if failure is not None:
            raise failure

    async def publish_each(self, messages: Sequence[Outgoing]) -> list[BaseException | None]:
        if self.fail_with is not None:
            raise self.fail_with
        outcomes: list[BaseException | None] = [
            PublishRefusedError("refused") if self._refused(message) else None for message in messages
        ]
        self.published.extend(m for m, outcome in zip(messages, outcomes, strict=True) if outcome is None)
        return outcomes

    def to(self, routing_key: str) -> list[Outgoing]:
        return [m for m in self.published if m.routing_key == routing_key]


@dataclass
class FakeConsumerChannel:
    """Deliveries go in with `deliver`; acks, windows and cancels are recorded."""

    acks: list[tuple[int, bool]] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    consuming: bool = False
    cancels: int = 0
    closed: bool = False
    _cancelled_by_broker: asyncio.Event = field(default_factory=asyncio.Event)
    _on_delivery: OnDelivery | None = None
    _next_tag: int = 1

    @property
    def cancelled_by_broker(self) -> asyncio.Event:
        return self._cancelled_by_broker

    async def set_window(self, count: int) -> None:
        self.windows.append(count)

    async def consume(self, queue: str, on_delivery: OnDelivery) -> None:
        self.consuming = True
        self._on_delivery = on_delivery

    async def cancel(self) -> None:
        self.consuming = False
        self.cancels += 1

    async def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        self.acks.append((delivery_tag, multiple))

    async def requeue(self, delivery_tag: int) -> None:
        self.requeued.append(delivery_tag)

    async def close(self) -> None:
        self.closed = True

    def deliver(self, body: bytes, *, message_id: str | None = None, headers: dict[str, Any] | None = None,
                redelivered: bool = False) -> Delivery:  # fmt: skip
        assert self._on_delivery is not None, "the role is not consuming"
        delivery = Delivery(body, self._next_tag, message_id, headers or {}, redelivered)
        self._next_tag += 1
        self._on_delivery(delivery)
        return delivery

    def acked(self) -> set[int]:
        """Every tag acked, `multiple` acks expanded over the tags still unsettled then
        (as the broker does: a requeued delivery is no longer on the channel)."""
        tags: set[int] = set()
        for tag, multiple in self.acks:
            tags |= set(range(1, tag + 1)) - set(self.requeued) if multiple else {tag}
        return tags


def fake_session(
    channel: FakeConsumerChannel | None = None, publisher: FakePublisher | None = None, prefix: str = "t"
) -> tuple[Session, FakeConsumerChannel, FakePublisher]:
    channel = channel or FakeConsumerChannel()
    publisher = publisher or FakePublisher()

    async def open_channel() -> ConsumerChannel:
        return channel

    session = Session(
        publisher=cast(Publisher, publisher),
        topology=Topology(prefix, ("p1",), retry_tiers(100, 1600)),
        lost=asyncio.Event(),
        open_channel=open_channel,
    )
    return session, channel, publisher
