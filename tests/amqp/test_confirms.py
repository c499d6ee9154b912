"""Publisher confirms settled in one pass (worker.amqp._confirms): each frame settles
exactly the publishes it covers, as aiormq would, and nothing is left pending."""

from __future__ import annotations

import asyncio
import secrets

import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import DeliveryError, PublishError
from pamqp import commands as spec

from worker.amqp import Outgoing, Publisher
from worker.amqp import _confirms as confirms


async def _channel(connection: AbstractConnection) -> aiormq.Channel:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    return underlay


async def test_a_frame_settles_the_publishes_it_covers_and_no_others(connection: AbstractConnection) -> None:
    channel = await _channel(connection)
    assert confirms.install(channel), "the installed aiormq no longer has what the one-pass confirms use"
    loop = asyncio.get_running_loop()
    pending: dict[int, asyncio.Future[object]] = {tag: loop.create_future() for tag in range(101, 106)}
    channel.confirmations.update(pending)

    await channel._on_confirm_frame(spec.Basic.Ack(delivery_tag=103, multiple=True))
    assert [tag for tag, future in pending.items() if future.done()] == [101, 102, 103]
    assert all(isinstance(pending[tag].result(), spec.Basic.Ack) for tag in (101, 102, 103))
    assert list(channel.confirmations) == [104, 105]

    await channel._on_confirm_frame(spec.Basic.Nack(delivery_tag=105, multiple=False))
    assert isinstance(pending[105].exception(), DeliveryError)
    assert not pending[104].done()
    await channel._on_confirm_frame(spec.Basic.Ack(delivery_tag=104, multiple=False))
    assert pending[104].done()
    assert not channel.confirmations

    # A frame for a tag nobody waits for changes nothing.
    await channel._on_confirm_frame(spec.Basic.Ack(delivery_tag=999, multiple=True))


async def test_batches_with_returns_among_them_end_with_nothing_pending(connection: AbstractConnection) -> None:
    declaring = await connection.channel()
    queue = await declaring.declare_queue(f"confirms-{secrets.token_hex(4)}", exclusive=True)
    publisher = await Publisher.open(connection)
    assert "_on_confirm_frame" in vars(publisher._underlay), "the publisher's channel settles confirms in one pass"
    nowhere = f"{queue.name}.missing"
    for round_number in range(5):
        messages = [Outgoing(routing_key=queue.name, body=b"x") for _ in range(2000)]
        unroutable = 400 * round_number + 7
        messages[unroutable] = Outgoing(routing_key=nowhere, body=b"lost")
        outcomes = await publisher.publish_each(messages)
        assert [i for i, outcome in enumerate(outcomes) if outcome is not None] == [unroutable]
        assert isinstance(outcomes[unroutable], PublishError)
        # Every ack, the returned message's marker included, was taken off the channel.
        assert not publisher._underlay.confirmations
    assert (await declaring.declare_queue(queue.name, passive=True)).declaration_result.message_count == 5 * 1999
