"""Many publishes written to an aiormq confirm channel as one buffer.

aiormq's `basic_publish` does, for every message: a timeout scope, a context manager, the
channel lock, a put on the connection's ten-slot write queue (so a thousand concurrent
publishes mostly wait for each other) and one socket write. With the task `gather` needs
around it that was ~200 µs of CPU per message: most of the thin producer's cost, and the
broker could take messages three times faster than one process could publish them.

Here a batch takes the channel lock once, encodes every message's frames into one buffer
(the method frame once per routing key), registers one confirmation per message in the
channel's own bookkeeping and makes one put. The channel's reader then settles those
confirmations exactly as it does its own: acks, nacks (`multiple` included), returns of
unroutable messages (matched by message id), and rejection of every pending one when the
channel or connection closes. Measured on the development machine: ~45 µs of CPU per
message and ~13,700 messages/s to a quorum queue, against ~200 µs and ~4,700.

The attributes used are the ones `basic_publish` itself uses; they are public by name but
not a documented API, so `supports()` checks them and the publisher falls back to one
`basic_publish` per message (and says so in the log) when an aiormq release changes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NamedTuple

import aiormq
import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

# What a batch touches on the channel; all of it is what aiormq's basic_publish uses.
_CHANNEL_ATTRIBUTES = (
    "lock",
    "delivery_tag",
    "confirmations",
    "message_id_delivery_tag",
    "create_future",
    "write_queue",
    "number",
    "max_content_size",
    "publisher_confirms",
)

Confirmation = spec.Basic.Ack | spec.Basic.Nack | BaseException


class Publish(NamedTuple):
    exchange: str
    routing_key: str
    properties: spec.Basic.Properties  # must carry a message_id: returns are matched by it
    body: bytes


def supports(channel: aiormq.Channel) -> bool:
    return channel.publisher_confirms and all(hasattr(channel, name) for name in _CHANNEL_ATTRIBUTES)


def _encode(channel: aiormq.Channel, publishes: Sequence[Publish]) -> bytes:
    number = channel.number
    chunk = channel.max_content_size
    marshal = pamqp.frame.marshal
    method_frames: dict[tuple[str, str], bytes] = {}
    parts: list[bytes] = []
    for publish in publishes:
        key = (publish.exchange, publish.routing_key)
        method = method_frames.get(key)
        if method is None:
            # mandatory: a message no queue takes comes back as an error, not a silent drop.
            frame = spec.Basic.Publish(exchange=publish.exchange, routing_key=publish.routing_key, mandatory=True)
            method = method_frames[key] = marshal(frame, number)
        parts.append(method)
        body = publish.body
        parts.append(marshal(ContentHeader(properties=publish.properties, body_size=len(body)), number))
        parts.extend(marshal(ContentBody(body[start : start + chunk]), number) for start in range(0, len(body), chunk))
    return b"".join(parts)


async def publish_batch(channel: aiormq.Channel, publishes: Sequence[Publish]) -> list[Confirmation]:
    """Writes every publish at once; returns, in order, the broker's ack or nack of each, or
    the exception that settled it (returned as unroutable, channel or connection closed).

    Raises only if nothing was written (the channel is closed, or the call was cancelled
    while waiting for room in the write queue); then no delivery tag was used up."""
    if not publishes:
        return []
    payload = _encode(channel, publishes)
    # Plain futures for the confirmations: one tracked by the channel's future store each
    # (what basic_publish makes) cost a third of a batch. One tracked future per batch
    # stands in for them all: the store rejects it when the channel or connection closes.
    loop = asyncio.get_running_loop()
    confirmations: list[asyncio.Future[spec.Basic.Ack | spec.Basic.Nack]] = []
    returns_by_id: list[tuple[str, int]] = []
    async with channel.lock:  # raises ChannelInvalidStateError if the channel is closed
        closed: asyncio.Future[None] = channel.create_future()
        first = channel.delivery_tag + 1
        for offset, publish in enumerate(publishes):
            tag = first + offset
            confirmation: asyncio.Future[spec.Basic.Ack | spec.Basic.Nack] = loop.create_future()
            channel.confirmations[tag] = confirmation
            confirmations.append(confirmation)
            message_id = publish.properties.message_id
            assert message_id, "a batched publish needs a message id to match a return"
            channel.message_id_delivery_tag[message_id] = tag
            returns_by_id.append((message_id, tag))
        channel.delivery_tag = first + len(publishes) - 1
        try:
            await channel.write_queue.put(ChannelFrame(payload=payload, should_close=False))
        except BaseException:
            # Not queued, so the broker never sees these publishes: give the tags back while
            # the lock is still held, as basic_publish does.
            channel.delivery_tag = first - 1
            for offset in range(len(confirmations)):
                channel.confirmations.pop(first + offset, None)
            _forget(channel, returns_by_id)
            closed.cancel()
            raise
    settled = asyncio.gather(*confirmations, return_exceptions=True)
    try:
        await asyncio.wait((settled, closed), return_when=asyncio.FIRST_COMPLETED)
        if not settled.done():
            reason = closed.exception() or ConnectionError("channel closed")
            for confirmation in confirmations:
                if not confirmation.done():
                    confirmation.set_exception(reason)
        return await settled
    finally:
        settled.cancel()  # only if the caller was cancelled: nothing waits for these any more
        closed.cancel()
        _forget(channel, returns_by_id)


def _forget(channel: aiormq.Channel, returns_by_id: list[tuple[str, int]]) -> None:
    """Drops the message-id → tag entries once settled (a later publish may reuse an id)."""
    by_id = channel.message_id_delivery_tag
    for message_id, tag in returns_by_id:
        if by_id.get(message_id) == tag:
            del by_id[message_id]
