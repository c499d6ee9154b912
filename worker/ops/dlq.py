"""Dead-letter queues, for operators: look at dead messages, put them back, or purge them.

Listing takes messages without acking and returns them all to the queue afterwards,
so it changes nothing but their redelivery count. What is shown of a message is its id,
reason, origin and age, and for a deletion request how many identities it carries —
never the identities themselves. Replay republishes to the origin queue (confirmed)
and only then acks the dead copy, so a crash mid-replay can duplicate, never lose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.amqp import Channel, Outgoing, Publisher, Topology
from worker.amqp.admin import HeldMessage, purge, take
from worker.amqp.topology import (
    ATTEMPT_HEADER,
    BROKER_DELIVERY_COUNT_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    ORIGIN_HEADER,
)
from worker.errors import NotFoundError

# Headers that describe the previous failure; a replayed message starts afresh without them.
FAILURE_HEADERS = (ERROR_HEADER, ATTEMPT_HEADER, ORIGIN_HEADER, DEAD_AT_HEADER, "x-death", BROKER_DELIVERY_COUNT_HEADER)


@dataclass(frozen=True)
class DeadMessage:
    queue: str
    message_id: str | None
    reason: str
    origin: str
    age_seconds: float | None
    size: int
    identity_count: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "messageId": self.message_id,
            "reason": self.reason,
            "origin": self.origin,
            "ageSeconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "size": self.size,
            "identityCount": self.identity_count,
        }


class UnknownQueueError(NotFoundError):
    pass


def dead_queues(topology: Topology, queue: str | None) -> list[str]:
    """The dead-letter queues meant by `queue`: all of them, or the one of a main/retry/dead name."""
    if queue is None:
        return [names.dead for names in topology.consumer_queues()]
    names = topology.find(queue)
    if names is None:
        raise UnknownQueueError(f"{queue!r} is not a queue of this deployment (prefix {topology.prefix!r})")
    return [names.dead]


def _origin(message: HeldMessage, dead_queue: str) -> str:
    headers = message.headers
    origin = headers.get(ORIGIN_HEADER)
    if isinstance(origin, bytes):
        origin = origin.decode()
    if isinstance(origin, str) and origin:
        return origin
    # Dead-lettered by the broker itself (delivery limit): the name says where it came from.
    return dead_queue.removesuffix(".dead")


def _reason(message: HeldMessage) -> str:
    headers = message.headers
    reason = headers.get(ERROR_HEADER)
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    if reason:
        return str(reason)
    if headers.get("x-death"):
        return "broker: delivery limit reached (the message kept failing or crashing its consumer)"
    return "unknown"


def _age(message: HeldMessage) -> float | None:
    dead_at = message.headers.get(DEAD_AT_HEADER)
    if isinstance(dead_at, int):
        return max(0.0, time.time() - dead_at / 1000)
    if message.timestamp is not None:
        return max(0.0, time.time() - message.timestamp.timestamp())
    return None


def _identity_count(body: bytes) -> int | None:
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("identities"), list):
        return len(decoded["identities"])
    return None


def describe_dead(message: HeldMessage, queue: str) -> DeadMessage:
    return DeadMessage(
        queue=queue,
        message_id=message.message_id,
        reason=_reason(message),
        origin=_origin(message, queue),
        age_seconds=_age(message),
        size=len(message.body),
        identity_count=_identity_count(message.body),
    )


async def _take_all(channel: Channel, queue: str, limit: int) -> list[HeldMessage]:
    return await take(channel, queue, limit)


async def _return_all(messages: Sequence[HeldMessage]) -> None:
    for message in messages:
        await message.give_back()


async def list_dead(channel: Channel, queues: Sequence[str], limit: int = 1000) -> list[DeadMessage]:
    found: list[DeadMessage] = []
    for queue in queues:
        messages = await _take_all(channel, queue, limit)
        try:
            found.extend(describe_dead(message, queue) for message in messages)
        finally:
            await _return_all(messages)
    return found


async def replay_dead(
    channel: Channel,
    publisher: Publisher,
    queues: Sequence[str],
    *,
    message_ids: set[str] | None = None,
    limit: int = 100_000,
    advance: Callable[[int], None] = lambda _n: None,
) -> int:
    """Republish dead messages (all, or those with the given ids) to their origin queue."""
    replayed = 0
    for queue in queues:
        messages = await _take_all(channel, queue, limit)
        chosen = [m for m in messages if message_ids is None or m.message_id in message_ids]
        others = [m for m in messages if m not in chosen]
        try:
            for start in range(0, len(chosen), 500):
                batch = chosen[start : start + 500]
                await publisher.publish(
                    [
                        Outgoing(
                            routing_key=_origin(m, queue),
                            body=m.body,
                            message_id=m.message_id,
                            headers={k: v for k, v in m.headers.items() if k not in FAILURE_HEADERS},
                        )
                        for m in batch
                    ]
                )
                for message in batch:
                    await message.ack()
                replayed += len(batch)
                advance(len(batch))
        finally:
            await _return_all(others)
    return replayed


async def purge_dead(channel: Channel, queues: Sequence[str]) -> int:
    purged = 0
    for queue in queues:
        purged += await purge(channel, queue)
    return purged
