"""The settle, retry, split, pause and dead-letter rules of a batch consumer, against a
fake channel and publisher: no broker, no database, milliseconds each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import asyncpg
import pytest

from tests.fakes import FakeConsumerChannel, FakePublisher, fake_session
from worker.amqp import Delivery, QueueNames
from worker.amqp.topology import ATTEMPT_HEADER, ERROR_HEADER, ORIGIN_HEADER
from worker.retry import RetryPolicy
from worker.roles.base import Session
from worker.roles.batch import DONE, BatchConsumer, DeadLetter, Disposition, Retry
from worker.roles.consuming import ConsumerOptions

Handle = Callable[[Sequence[Delivery]], list[Disposition]]
QUEUE = QueueNames("t.requests")


def options(**overrides: object) -> ConsumerOptions:
    values: dict[str, object] = {
        "retry": RetryPolicy(max_attempts=3, base_ms=1, cap_ms=5),
        "batch_size": 100,
        "batch_wait_ms": 0,
        "window_max": 1000,
        "window_bytes": 1024 * 1024,
        "unavailable_hold_seconds": 60.0,
    }
    values.update(overrides)
    return ConsumerOptions(**values)  # type: ignore[arg-type]


class Consumer(BatchConsumer):
    def __init__(self, handle: Handle, consumer_options: ConsumerOptions, probe_failures: int = 0) -> None:
        super().__init__("test", QUEUE, consumer_options, self._probe)
        self._handle = handle
        self.batches: list[list[bytes]] = []
        self.probe_failures = probe_failures

    async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
        self.batches.append([d.body for d in batch])
        return self._handle(batch)

    async def _probe(self) -> None:
        if self.probe_failures > 0:
            self.probe_failures -= 1
            raise ConnectionRefusedError("database down")


async def started(
    consumer: Consumer,
) -> tuple[Session, FakeConsumerChannel, FakePublisher, asyncio.Event, asyncio.Task[None]]:
    session, channel, publisher = fake_session()
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(session, stopping))
    for _ in range(100):
        if channel.consuming:
            break
        await asyncio.sleep(0.001)
    return session, channel, publisher, stopping, task


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.005)


async def stop(stopping: asyncio.Event, task: asyncio.Task[None]) -> None:
    stopping.set()
    await asyncio.wait_for(task, 10)


async def test_a_batch_is_settled_with_one_multiple_ack_after_its_copies_are_published() -> None:
    def handle(batch: Sequence[Delivery]) -> list[Disposition]:
        return [
            DeadLetter("schema: bad") if d.body == b"bad" else Retry("later") if d.body == b"slow" else DONE
            for d in batch
        ]

    consumer = Consumer(handle, options())
    _, channel, publisher, stopping, task = await started(consumer)
    for body in (b"ok", b"bad", b"slow", b"ok2"):
        channel.deliver(body, message_id=body.decode())
    await until(lambda: channel.acked() == {1, 2, 3, 4})
    assert channel.acks == [(4, True)]
    [dead] = publisher.to(QUEUE.dead)
    assert (dead.body, dead.headers[ERROR_HEADER], dead.headers[ORIGIN_HEADER]) == (b"bad", "schema: bad", QUEUE.main)
    [retry] = publisher.to(QUEUE.main)
    assert retry.exchange.startswith("t.retry.")
    assert retry.exchange.endswith("ms")
    assert (retry.body, retry.message_id, retry.headers[ATTEMPT_HEADER]) == (b"slow", "slow", 1)
    await stop(stopping, task)


async def test_retries_are_dead_lettered_once_the_attempts_are_used_up() -> None:
    consumer = Consumer(lambda batch: [Retry("still down")] * len(batch), options())
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"x", message_id="m", headers={ATTEMPT_HEADER: 2})
    await until(lambda: channel.acked() == {1})
    [dead] = publisher.to(QUEUE.dead)
    assert dead.headers[ERROR_HEADER] == "retries exhausted after 3 attempts: still down"
    await stop(stopping, task)


async def test_contention_is_retried_in_place() -> None:
    failures = [asyncpg.exceptions.DeadlockDetectedError("deadlock")] * 2

    def handle(batch: Sequence[Delivery]) -> list[Disposition]:
        if failures:
            raise failures.pop()
        return [DONE] * len(batch)

    consumer = Consumer(handle, options())
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"a")
    channel.deliver(b"b")
    await until(lambda: channel.acked() == {1, 2})
    assert len(consumer.batches) == 3
    assert publisher.published == []
    await stop(stopping, task)


async def test_a_batch_too_big_for_a_resource_is_split_until_it_fits() -> None:
    # Out of shared memory for more than two messages at once: the same batch would fail
    # the same way forever (the livelock of the acks role after a backlog).
    def handle(batch: Sequence[Delivery]) -> list[Disposition]:
        if len(batch) > 2:
            raise asyncpg.exceptions.OutOfMemoryError("out of shared memory")
        return [DONE] * len(batch)

    consumer = Consumer(handle, options())
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"filler")  # taken alone; the rest arrive as one batch
    await until(lambda: channel.acked() == {1})
    for index in range(9):
        channel.deliver(f"m{index}".encode())
    await until(lambda: channel.acked() == set(range(1, 11)))
    assert publisher.published == []
    assert max(len(batch) for batch in consumer.batches[2:]) <= 9
    assert sorted(b for batch in consumer.batches if len(batch) <= 2 for b in batch) == sorted(
        [b"filler", *(f"m{i}".encode() for i in range(9))]
    )
    await stop(stopping, task)


async def test_a_single_message_that_keeps_failing_a_resource_goes_to_the_retry_tiers() -> None:
    def handle(_batch: Sequence[Delivery]) -> list[Disposition]:
        raise asyncpg.exceptions.OutOfMemoryError("out of shared memory")

    consumer = Consumer(handle, options())
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"huge", message_id="h")
    await until(lambda: channel.acked() == {1})
    [retry] = publisher.published
    assert retry.routing_key == QUEUE.main
    assert retry.headers[ERROR_HEADER].startswith("database error 53200")
    await stop(stopping, task)


async def test_one_poisonous_message_is_isolated_and_dead_lettered() -> None:
    def handle(batch: Sequence[Delivery]) -> list[Disposition]:
        if any(d.body == b"poison" for d in batch):
            raise ValueError("cannot handle")
        return [DONE] * len(batch)

    consumer = Consumer(handle, options())
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"first")
    await until(lambda: channel.acked() == {1})
    for body in (b"a", b"poison", b"b"):
        channel.deliver(body)
    await until(lambda: channel.acked() == {1, 2, 3, 4})
    [dead] = publisher.published
    assert (dead.routing_key, dead.body) == (QUEUE.dead, b"poison")
    assert dead.headers[ERROR_HEADER] == "processing failed: ValueError"
    await stop(stopping, task)


async def test_an_unavailable_database_pauses_the_consumer_and_keeps_the_batch() -> None:
    down = [ConnectionRefusedError("refused")]

    def handle(batch: Sequence[Delivery]) -> list[Disposition]:
        if down:
            raise down.pop()
        return [DONE] * len(batch)

    consumer = Consumer(handle, options(), probe_failures=1)
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"held")
    await until(lambda: channel.acked() == {1})
    assert channel.cancels == 1
    assert channel.consuming
    assert publisher.published == []  # nothing copied, nothing counted against the delivery limit
    assert consumer.batches == [[b"held"], [b"held"]]
    await stop(stopping, task)


async def test_work_held_past_the_hold_time_is_handed_back_uncounted() -> None:
    def handle(_batch: Sequence[Delivery]) -> list[Disposition]:
        raise ConnectionRefusedError("refused")

    consumer = Consumer(handle, options(unavailable_hold_seconds=0.0), probe_failures=3)
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"one", message_id="1", headers={"x-delivery-count": 4, "keep": "me"})
    await until(lambda: channel.acked() == {1})
    [copy] = publisher.published
    assert (copy.routing_key, copy.body, copy.message_id) == (QUEUE.main, b"one", "1")
    assert copy.headers == {"keep": "me"}  # the broker's count starts afresh on the copy
    await until(lambda: channel.consuming)
    await stop(stopping, task)


async def test_over_the_byte_budget_a_delivery_is_handed_back_and_no_multiple_ack_covers_it() -> None:
    release = asyncio.Event()
    seen: list[int] = []

    class Slow(Consumer):
        async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
            seen.append(len(batch))
            await release.wait()
            return [DONE] * len(batch)

    consumer = Slow(lambda b: [], options(window_bytes=1000, batch_size=10))
    _, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"x" * 400)  # taken at once, held by the slow handler
    await until(lambda: seen == [1])
    channel.deliver(b"y" * 400)  # fits: 800 held
    channel.deliver(b"z" * 400, message_id="z")  # would be 1,200: handed back
    await until(lambda: channel.acked() == {3})
    assert [m.body for m in publisher.to(QUEUE.main)] == [b"z" * 400]
    release.set()
    await until(lambda: channel.acked() == {1, 2, 3})
    assert (3, True) not in channel.acks
    await stop(stopping, task)


async def test_a_refused_hand_back_gives_the_delivery_back_and_no_ack_covers_it() -> None:
    """Found in review: a refused hand-back forgot the delivery, and the next batch's
    `multiple` ack acked it with no copy anywhere (lost)."""
    release = asyncio.Event()

    class Slow(Consumer):
        async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
            await release.wait()
            return [DONE] * len(batch)

    consumer = Slow(lambda b: [], options(window_bytes=1000, batch_size=10))
    _, channel, publisher, stopping, task = await started(consumer)
    publisher.refuse_bodies.add(b"z" * 700)
    channel.deliver(b"x" * 400)  # held by the slow handler
    await asyncio.sleep(0.01)
    channel.deliver(b"z" * 700)  # over the budget; its hand-back is refused
    await until(lambda: channel.requeued == [2])
    release.set()
    channel.deliver(b"a")
    channel.deliver(b"b")
    await until(lambda: {1, 3, 4} <= channel.acked())
    assert 2 not in channel.acked()  # back on the queue by the nack, never acked
    assert publisher.published == []
    assert consumer.inbox.held_bytes == 0
    await stop(stopping, task)


async def test_the_window_shrinks_for_large_messages() -> None:
    consumer = Consumer(lambda batch: [DONE] * len(batch), options(window_bytes=100_000, window_max=1000))
    _, channel, _, stopping, task = await started(consumer)
    assert channel.windows == [6]  # 100 kB over the first guess of 16 kB per message
    channel.deliver(b"s" * 10)
    await until(lambda: channel.acked() == {1})
    channel.deliver(b"L" * 50_000)
    await until(lambda: channel.acked() == {1, 2})
    await until(lambda: channel.windows[-1] == 2)
    await stop(stopping, task)


async def test_a_graceful_stop_hands_back_what_was_only_buffered() -> None:
    release = asyncio.Event()

    class Slow(Consumer):
        async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
            await release.wait()
            return [DONE] * len(batch)

    consumer = Slow(lambda b: [], options(batch_size=1))
    _, channel, publisher, stopping, task = await started(consumer)
    for body in (b"in-hand", b"buffered-1", b"buffered-2"):
        channel.deliver(body)
    await asyncio.sleep(0.01)
    stopping.set()
    release.set()
    await asyncio.wait_for(task, 10)
    assert channel.acked() == {1, 2, 3}
    assert sorted(m.body for m in publisher.to(QUEUE.main)) == [b"buffered-1", b"buffered-2"]


async def test_messages_returned_by_a_lost_session_are_refreshed_when_they_come_back() -> None:
    release = asyncio.Event()

    class Slow(Consumer):
        async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
            await release.wait()
            return [DONE] * len(batch)

    consumer = Slow(lambda b: [], options(refresh_after_deliveries=2, batch_size=1))
    session, channel, _, _, task = await started(consumer)
    channel.deliver(b"a", message_id="a")
    channel.deliver(b"b", message_id="b")
    await asyncio.sleep(0.01)
    session.lost.set()  # the broker connection went away; this process lives on
    task.cancel()  # as the supervisor does with every role of a lost session
    await asyncio.gather(task, return_exceptions=True)
    # A new session: the broker delivers them again, counted (RabbitMQ 3.x counts returns).
    session, channel, publisher, stopping, task = await started(consumer)
    channel.deliver(b"b", message_id="b", headers={"x-delivery-count": 3}, redelivered=True)
    channel.deliver(b"c", message_id="c", headers={"x-delivery-count": 3}, redelivered=True)  # not ours: processed
    await until(lambda: 1 in channel.acked())
    assert [(m.body, m.headers) for m in publisher.to(QUEUE.main)] == [(b"b", {})]
    release.set()
    await until(lambda: channel.acked() == {1, 2})
    await stop(stopping, task)


@pytest.mark.parametrize("count", [3])
async def test_dispositions_must_match_the_batch(count: int) -> None:
    consumer = Consumer(lambda batch: [DONE] * (len(batch) + 1), options())
    _, channel, _, stopping, task = await started(consumer)
    for index in range(count):
        channel.deliver(str(index).encode())
    await asyncio.sleep(0.05)
    assert channel.acks == []  # a broken handler never acks what it did not account for
    stopping.set()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
