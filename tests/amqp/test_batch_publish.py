"""Batched publishing: every message arrives as sent, and every way the broker can answer
(ack, nack, return, channel closed) reaches the caller, on both publishing paths."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import ChannelNotFoundEntity, PublishError
from pamqp import commands as spec

from tests.support import Services
from worker.amqp import Outgoing, Publisher, PublishRefusedError, is_broker_failure
from worker.amqp import _batch as batch_publish
from worker.amqp.connection import ConfirmTimeoutError

DeclareQueue = Callable[..., Awaitable[str]]


@pytest.fixture
async def declare_queue(connection: AbstractConnection) -> AsyncIterator[DeclareQueue]:
    """Declares queues under a name of this test's own; deletes them afterwards."""
    prefix = f"batchpub-{secrets.token_hex(4)}"
    channel = await connection.channel()
    names: list[str] = []

    async def declare(suffix: str, **arguments: Any) -> str:
        name = f"{prefix}.{suffix}"
        await channel.declare_queue(name, durable=True, arguments=arguments or None)
        names.append(name)
        return name

    yield declare
    for name in names:
        with contextlib.suppress(Exception):
            await channel.queue_delete(name)
    await channel.close()


async def drain(channel: AbstractChannel, queue_name: str, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.get_queue(queue_name, ensure=False)
    received = []
    for _ in range(count):
        message = await queue.get(no_ack=True, timeout=10)
        assert message is not None
        received.append(message)
    assert await queue.get(no_ack=True, fail=False) is None, "more messages than were published"
    return received


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-at-a-time"])
async def test_every_message_arrives_in_order_with_its_properties(
    connection: AbstractConnection, declare_queue: DeclareQueue, batched: bool
) -> None:
    first, second = await declare_queue("a"), await declare_queue("b")
    publisher = await Publisher.open(connection, batched=batched)
    # Larger than one frame (the broker's frame_max is 128 KiB by default): split across frames.
    large = bytes(range(256)) * 1200
    messages = [
        Outgoing(routing_key=first if i % 2 else second, body=f"m{i}".encode(), message_id=f"id-{i}") for i in range(50)
    ]
    messages.append(
        Outgoing(routing_key=first, body=large, headers={"x-reason": "why", "x-count": 3}, expiration_ms=60_000)
    )
    await publisher.publish(messages)
    # A second batch on the same channel: the delivery tags must still line up with the broker's.
    await publisher.publish([Outgoing(routing_key=second, body=b"after")])

    channel = await connection.channel()
    on_first = await drain(channel, first, 26)
    on_second = await drain(channel, second, 26)
    assert [m.body for m in on_first[:25]] == [f"m{i}".encode() for i in range(1, 50, 2)]
    assert [m.message_id for m in on_first[:25]] == [f"id-{i}" for i in range(1, 50, 2)]
    assert [m.body for m in on_second] == [f"m{i}".encode() for i in range(0, 50, 2)] + [b"after"]
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in on_first + on_second)
    assert all(m.content_type == "application/json" for m in on_first + on_second)
    big = on_first[25]
    assert big.body == large
    assert big.headers == {"x-reason": "why", "x-count": 3}
    assert big.expiration == 60  # seconds, as aio-pika reads the 60,000 ms it was sent with
    assert big.message_id, "a message id is always set: returns are matched by it"


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-at-a-time"])
async def test_an_unroutable_message_fails_the_call_and_the_rest_still_arrive(
    connection: AbstractConnection, declare_queue: DeclareQueue, batched: bool
) -> None:
    queue = await declare_queue("q")
    publisher = await Publisher.open(connection, batched=batched)
    nowhere = f"{queue}.missing"
    with pytest.raises(PublishError):
        await publisher.publish(
            [Outgoing(routing_key=queue, body=b"1"), Outgoing(routing_key=nowhere, body=b"x"), Outgoing(queue, b"2")]
        )
    assert [m.body for m in await drain(await connection.channel(), queue, 2)] == [b"1", b"2"]
    # The channel stays usable, with its tags in step.
    await publisher.publish([Outgoing(routing_key=queue, body=b"3")])
    assert [m.body for m in await drain(await connection.channel(), queue, 1)] == [b"3"]


async def test_a_message_the_broker_keeps_refusing_is_an_error(
    connection: AbstractConnection, declare_queue: DeclareQueue
) -> None:
    queue = await declare_queue("full", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    publisher = await Publisher.open(connection, refused_retry_seconds=0.5)
    with pytest.raises(PublishRefusedError) as raised:
        await publisher.publish([Outgoing(routing_key=queue, body=b"kept"), Outgoing(routing_key=queue, body=b"no")])
    # Past the window the channel is suspect: a broker failure, so the caller's session is made again.
    assert is_broker_failure(raised.value)
    assert [m.body for m in await drain(await connection.channel(), queue, 1)] == [b"kept"]


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one-at-a-time"])
async def test_a_refusal_that_clears_is_not_the_callers_problem(
    connection: AbstractConnection, declare_queue: DeclareQueue, batched: bool
) -> None:
    """A queue refuses for a moment (as a quorum queue electing a leader does): the refused
    message is sent again until it is taken, and the call succeeds."""
    queue = await declare_queue("full", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    publisher = await Publisher.open(connection, batched=batched, refused_retry_seconds=30)
    channel = await connection.channel()

    async def make_room() -> bytes:
        await asyncio.sleep(0.5)
        return (await drain(channel, queue, 1))[0].body

    taken_first = asyncio.create_task(make_room())
    await publisher.publish([Outgoing(routing_key=queue, body=b"first"), Outgoing(routing_key=queue, body=b"then")])
    assert await taken_first == b"first"
    assert [m.body for m in await drain(channel, queue, 1)] == [b"then"]


async def test_a_publish_never_confirmed_ends_the_session_after_the_confirm_timeout(
    connection: AbstractConnection, declare_queue: DeclareQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel that stops confirming (a wedged node, an alarm that does not clear) does
    not hold the caller for ever: it is a broker failure, and the session is made again."""
    queue = await declare_queue("q")
    publisher = await Publisher.open(connection, confirm_timeout=0.3)

    async def never_confirmed(_messages: object) -> list[object]:
        await asyncio.sleep(3600)
        return []

    monkeypatch.setattr(publisher, "_publish_until_taken", never_confirmed)
    with pytest.raises(ConfirmTimeoutError) as raised:
        await publisher.publish([Outgoing(routing_key=queue, body=b"1")])
    assert is_broker_failure(raised.value)


async def test_a_channel_closed_under_a_batch_fails_every_message_without_hanging(
    connection: AbstractConnection,
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    # Publishing to an exchange that does not exist makes the broker close the channel.
    missing_exchange = f"batchpub-missing-{secrets.token_hex(4)}"
    publishes = [
        batch_publish.Publish(missing_exchange, "k", spec.Basic.Properties(message_id=f"m{i}"), b"x") for i in range(3)
    ]
    results = await asyncio.wait_for(batch_publish.publish_batch(underlay, publishes), timeout=10)
    assert len(results) == 3
    assert all(isinstance(result, ChannelNotFoundEntity) for result in results)
    assert not underlay.confirmations or all(f.done() for f in underlay.confirmations.values())


async def test_a_batch_cancelled_before_it_was_written_gives_its_delivery_tags_back(
    connection: AbstractConnection, declare_queue: DeclareQueue
) -> None:
    queue = await declare_queue("q")
    channel = await connection.channel(publisher_confirms=True)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    shared_queue = underlay.write_queue
    full: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
    full.put_nowait(object())
    underlay.write_queue = full  # no room: the batch waits to be queued
    publish = batch_publish.Publish("", queue, spec.Basic.Properties(message_id="m1"), b"never")
    waiting = asyncio.create_task(batch_publish.publish_batch(underlay, [publish]))
    await asyncio.sleep(0.05)
    assert underlay.delivery_tag == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert underlay.delivery_tag == 0
    assert not underlay.confirmations
    assert not underlay.message_id_delivery_tag

    underlay.write_queue = shared_queue
    after = batch_publish.Publish("", queue, spec.Basic.Properties(message_id="m2"), b"after")
    results = await batch_publish.publish_batch(underlay, [after])
    assert isinstance(results[0], spec.Basic.Ack)
    assert [m.body for m in await drain(await connection.channel(), queue, 1)] == [b"after"]


async def test_the_installed_aiormq_allows_batched_writes(connection: AbstractConnection) -> None:
    """If an aiormq upgrade renames what a batch relies on, publishing silently falls back
    to one message at a time (four times the CPU): this says so in the test run."""
    channel = await connection.channel(publisher_confirms=True)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    assert batch_publish.supports(underlay)


async def _confirm_channel(connection: AbstractConnection) -> aiormq.Channel:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    return underlay


def _publish(queue: str, message_id: str, body: bytes = b"x") -> batch_publish.Publish:
    return batch_publish.Publish("", queue, spec.Basic.Properties(message_id=message_id), body)


async def test_publishes_sharing_a_message_id_each_get_their_own_answer(
    connection: AbstractConnection, declare_queue: DeclareQueue
) -> None:
    """Returns are matched by message id: a returned message must not be reported
    against another in flight with the same id (a retry copy keeps its original's)."""
    queue = await declare_queue("q")
    nowhere = f"{queue}.missing"
    underlay = await _confirm_channel(connection)
    results = await batch_publish.publish_batch(underlay, [_publish(nowhere, "dup"), _publish(queue, "dup")])
    assert isinstance(results[0], PublishError)
    assert isinstance(results[1], spec.Basic.Ack)
    # The same across concurrent calls on one channel.
    lost, kept = await asyncio.gather(
        batch_publish.publish_batch(underlay, [_publish(nowhere, "dup2")]),
        batch_publish.publish_batch(underlay, [_publish(queue, "dup2", b"kept")]),
    )
    assert isinstance(lost[0], PublishError)
    assert isinstance(kept[0], spec.Basic.Ack)
    assert [m.body for m in await drain(await connection.channel(), queue, 2)] == [b"x", b"kept"]
    assert not underlay.message_id_delivery_tag


async def test_a_caller_cancelled_while_waiting_for_confirms_leaves_nothing_to_log(
    connection: AbstractConnection,
) -> None:
    underlay = await _confirm_channel(connection)
    underlay.write_queue = asyncio.Queue()  # nothing drains it: the confirms never come
    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: logged.append(context))
    try:
        waiting = asyncio.create_task(batch_publish.publish_batch(underlay, [_publish("q", "m1")]))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        del waiting
        gc.collect()
        await asyncio.sleep(0.01)
        assert not logged
        assert not underlay.message_id_delivery_tag
    finally:
        loop.set_exception_handler(None)


async def test_a_batch_waiting_for_room_fails_when_the_connection_closes(services: Services) -> None:
    own = await aio_pika.connect(services.amqp_url)
    underlay = await _confirm_channel(own)
    full: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
    full.put_nowait(object())
    underlay.write_queue = full  # a writer that stopped: the queue never empties
    waiting = asyncio.create_task(batch_publish.publish_batch(underlay, [_publish("q", "m1")]))
    await asyncio.sleep(0.05)
    await own.close()
    with pytest.raises(Exception):  # noqa: B017 - whatever the connection closed with
        await asyncio.wait_for(waiting, timeout=10)
    assert underlay.delivery_tag == 0
    assert not underlay.confirmations
