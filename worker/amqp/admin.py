"""Broker calls of the operator tools (queue depths, dead letters) and of test and bench
set-up: passive declares, taking messages one by one, purging."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage


@dataclass(frozen=True)
class QueueDepth:
    name: str
    exists: bool
    ready: int | None = None
    consumers: int | None = None


async def queue_depths(connection: AbstractConnection, names: Sequence[str]) -> list[QueueDepth]:
    """Ready messages and consumers by passive declare: works without the management plugin."""
    depths = []
    channel = await connection.channel()
    for name in names:
        try:
            declared = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            depths.append(QueueDepth(name, exists=False))
            channel = await connection.channel()  # a failed passive declare closes the channel
            continue
        result = declared.declaration_result
        depths.append(QueueDepth(name, True, result.message_count, result.consumer_count))
    await channel.close()
    return depths


@dataclass(frozen=True)
class HeldMessage:
    """A message taken off a queue and not yet settled: ack it, or give it back."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None
    timestamp: datetime | None
    _message: AbstractIncomingMessage

    async def ack(self) -> None:
        await self._message.ack()

    async def give_back(self) -> None:
        await self._message.nack(requeue=True)


async def take(channel: AbstractChannel, queue: str, limit: int) -> list[HeldMessage]:
    """Up to `limit` messages of `queue`, unacked (given back if the channel closes)."""
    declared = await channel.get_queue(queue, ensure=False)
    taken: list[HeldMessage] = []
    while len(taken) < limit:
        message = await declared.get(no_ack=False, fail=False)
        if message is None:
            break
        taken.append(HeldMessage(message.body, message.headers or {}, message.message_id, message.timestamp, message))
    return taken


async def purge(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.get_queue(queue, ensure=False)
    result = await declared.purge()
    return result.message_count or 0
