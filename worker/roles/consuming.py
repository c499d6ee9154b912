"""What every consuming role shares: its channel, a byte-bounded inbox, and settling.

Memory is bounded by bytes, not by message count. The broker's prefetch window is
sized from the largest recent message so that a window's worth fits the role's byte
budget (`DELETION_CONSUMER_MAX_BYTES`), and a delivery that would still take the held
bytes over the budget (a run of large messages after small ones) is *handed back*:
republished to its queue with publisher confirms, then acked. Handing back is also how
deliveries leave a role on a graceful stop and during a long database outage, and how a
message returned by a lost session is refreshed: RabbitMQ 3.x quorum queues count every
return towards the delivery limit, so holding on or nacking would, over a few restarts,
dead-letter messages that no handler ever saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from worker import metrics
from worker.amqp import ConsumerChannel, Delivery, Outgoing, QueueNames
from worker.amqp.topology import (
    ATTEMPT_HEADER,
    BROKER_DELIVERY_COUNT_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    ORIGIN_HEADER,
)
from worker.errors import describe
from worker.retry import RetryPolicy
from worker.roles.base import Role, Session
from worker.roles.inbox import Inbox, Window

log = structlog.get_logger(__name__)

UNSETTLED_REMEMBERED = 100_000


@dataclass(frozen=True)
class ConsumerOptions:
    retry: RetryPolicy
    batch_size: int = 500
    batch_max_bytes: int = 8 * 1024 * 1024
    batch_wait_ms: int = 5
    window_max: int = 2000  # prefetch, at most
    window_bytes: int = 64 * 1024 * 1024  # bytes a role may hold: inbox and work in hand
    contention_attempts: int = 5
    unavailable_hold_seconds: float = 300.0
    refresh_after_deliveries: int = 10  # a returned message is refreshed once counted this often


@dataclass
class ConsumerStats:
    consumed: int = 0
    dead_lettered: int = 0
    retried: int = 0
    handed_back: int = 0


def _fresh_headers(delivery: Delivery) -> dict[str, object]:
    return {k: v for k, v in delivery.headers.items() if k != BROKER_DELIVERY_COUNT_HEADER}


class QueueRole(Role):
    """A role consuming one queue. Subclasses implement `consume_loop`."""

    def __init__(self, name: str, queue: QueueNames, options: ConsumerOptions) -> None:
        super().__init__(name)
        self.queue = queue
        self.options = options
        self.stats = ConsumerStats()
        self.inbox = Inbox()
        self._arrived = asyncio.Event()
        self._window = Window(options.window_max, options.window_bytes)
        # Ids of deliveries this process received and has not settled. One of them coming
        # back redelivered was returned by a lost session (or a nack) while this process
        # lived: not a message that crashes workers, and its count is reset on arrival.
        self._unsettled: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._channel: ConsumerChannel | None = None
        self._session: Session | None = None
        self.consuming = False

    @property
    def consumes(self) -> str:
        return self.queue.main

    async def consume_loop(self, session: Session, stopping: asyncio.Event) -> None:
        raise NotImplementedError

    # -- the session ------------------------------------------------------------------

    async def run(self, session: Session, stopping: asyncio.Event) -> None:
        channel = await session.open_channel()
        self._channel, self._session, self.inbox = channel, session, Inbox()
        try:
            await channel.set_window(self._window.current)
            await self.resume_consuming()
            await self.consume_loop(session, stopping)
            if stopping.is_set() and not session.lost.is_set():
                await self._stop_gracefully()
        finally:
            self.consuming = False
            metrics.CONSUMERS_ACTIVE.labels(self.queue.main).set(0)
            for task in list(self._background):
                task.cancel()
            self._channel = None
            if not session.lost.is_set():
                # Left by a graceful stop or a failure of this role alone: whatever it
                # still holds goes back to the queue with the channel.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), 5)
        if channel.cancelled_by_broker.is_set() and not stopping.is_set():
            metrics.CONSUMER_CANCELLED.labels(self.queue.main).inc()
            raise ConsumerCancelledError(f"the broker cancelled the consumer of {self.queue.main}")

    async def resume_consuming(self) -> None:
        assert self._channel is not None
        await self._channel.consume(self.queue.main, self._on_delivery)
        self.consuming = True
        metrics.CONSUMERS_ACTIVE.labels(self.queue.main).set(1)

    async def pause_consuming(self) -> None:
        self.consuming = False
        metrics.CONSUMERS_ACTIVE.labels(self.queue.main).set(0)
        if self._channel is not None:
            await self._channel.cancel()

    def interrupted(self, session: Session, stopping: asyncio.Event) -> bool:
        assert self._channel is not None
        return stopping.is_set() or session.lost.is_set() or self._channel.cancelled_by_broker.is_set()

    async def _stop_gracefully(self) -> None:
        """No more deliveries; what is buffered goes back to the queue uncounted."""
        await self.pause_consuming()
        await asyncio.sleep(0)  # deliveries read before the cancel was confirmed are queued as tasks
        await asyncio.sleep(0)
        await self.hand_back(self.take_inbox(), "stop")
        if self._background:
            await asyncio.wait(list(self._background), timeout=10)

    def _received(self, delivery: Delivery) -> None:
        if delivery.message_id is not None:
            self._unsettled[delivery.message_id] = None
            self._unsettled.move_to_end(delivery.message_id)
            while len(self._unsettled) > UNSETTLED_REMEMBERED:
                self._unsettled.popitem(last=False)

    def _settled(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.message_id is not None:
                self._unsettled.pop(delivery.message_id, None)

    # -- the inbox ----------------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        if (
            delivery.redelivered
            and delivery.message_id is not None
            and delivery.broker_deliveries >= self.options.refresh_after_deliveries
            and delivery.message_id in self._unsettled
        ):
            self._hand_back_soon([delivery], "returned")
            return
        self._received(delivery)
        if self.inbox.holds_any and self.inbox.held_bytes + delivery.size > self.options.window_bytes:
            # Large messages after small ones: shrink the window now, not after the batch.
            self._window.seen(delivery.size)
            self._background_task(self.adapt_window())
            self._hand_back_soon([delivery], "over_budget")
            return
        self.inbox.add(delivery)
        self._window.seen(delivery.size)
        self._arrived.set()

    def take(self, max_count: int, max_bytes: int) -> list[Delivery]:
        taken = self.inbox.take(max_count, max_bytes)
        if not self.inbox.waiting:
            self._arrived.clear()
        return taken

    def take_inbox(self) -> list[Delivery]:
        taken = self.inbox.take_all()
        self._arrived.clear()
        return taken

    async def wait_for_delivery(self, session: Session, stopping: asyncio.Event) -> bool:
        """Until something is in the inbox (True), or the role must end (False)."""
        assert self._channel is not None
        while not self.inbox.waiting:
            if self.interrupted(session, stopping):
                return False
            waiters = [
                self._arrived.wait(),
                stopping.wait(),
                session.lost.wait(),
                self._channel.cancelled_by_broker.wait(),
            ]
            futures = [asyncio.ensure_future(w) for w in waiters]
            try:
                await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for future in futures:
                    future.cancel()
        return not self.interrupted(session, stopping)

    async def adapt_window(self) -> None:
        """Size the prefetch window from the largest recent message."""
        window = self._window.next()
        if window is not None and self._channel is not None:
            await self._channel.set_window(window)

    # -- settling ------------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Ack these (a batch in delivery order, or one). One `multiple` ack when nothing
        older is still being handed back (a multiple ack would cover it too early)."""
        assert self._channel is not None
        last = deliveries[-1].delivery_tag
        if len(deliveries) > 1 and not self.inbox.handed_back_before(last):
            await self._channel.ack(last, multiple=True)
        else:
            for delivery in deliveries:
                await self._channel.ack(delivery.delivery_tag)
        self.inbox.released(deliveries)
        self._settled(deliveries)
        self.stats.consumed += len(deliveries)
        metrics.MESSAGES_CONSUMED.labels(self.queue.main).inc(len(deliveries))
        metrics.HEARTBEAT.set(time.time())

    def retry_copy(self, delivery: Delivery, reason: str) -> Outgoing:
        assert self._session is not None
        attempt = delivery.attempt + 1
        if attempt >= self.options.retry.max_attempts:
            return self.dead_copy(delivery, f"retries exhausted after {attempt} attempts: {reason}")
        self.stats.retried += 1
        metrics.MESSAGES_RETRIED.labels(self.queue.main).inc()
        topology = self._session.topology
        delay = topology.choose_retry_tier(self.options.retry.bound_ms(attempt))
        log.info("message_retry", queue=self.queue.main, attempt=attempt, delay_ms=delay, reason=reason)
        return Outgoing(
            exchange=topology.retry_tier(delay),
            routing_key=self.queue.main,  # where the tier sends it back when its time is up
            body=delivery.body,
            headers={**_fresh_headers(delivery), ATTEMPT_HEADER: attempt, ERROR_HEADER: reason[:1000]},
            message_id=delivery.message_id,
            queue_label=topology.retry_tier(delay),
        )

    def dead_copy(self, delivery: Delivery, reason: str) -> Outgoing:
        self.stats.dead_lettered += 1
        metrics.MESSAGES_DEAD_LETTERED.labels(self.queue.main, reason.split(":", 1)[0][:40]).inc()
        log.warning(
            "message_dead_lettered",
            queue=self.queue.main,
            message_id=delivery.message_id,
            size=delivery.size,
            reason=reason,
        )
        headers = {
            **_fresh_headers(delivery),
            ERROR_HEADER: reason[:1000],
            ORIGIN_HEADER: self.queue.main,
            DEAD_AT_HEADER: int(time.time() * 1000),
        }
        return Outgoing(
            routing_key=self.queue.dead, body=delivery.body, headers=headers, message_id=delivery.message_id
        )

    async def hand_back(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Republish to the queue (confirmed), then ack: the copies start with a fresh count."""
        if not deliveries or self._session is None:
            return
        self.inbox.handing_back_started(deliveries)
        try:
            copies = [
                Outgoing(routing_key=self.queue.main, body=d.body, headers=_fresh_headers(d), message_id=d.message_id)
                for d in deliveries
            ]
            await self._session.publisher.publish(copies)
            assert self._channel is not None
            for delivery in deliveries:
                await self._channel.ack(delivery.delivery_tag)
        except Exception as error:  # noqa: BLE001 - the copies were refused: give the originals back instead
            log.warning("hand_back_failed", queue=self.queue.main, count=len(deliveries), error=describe(error))
            await self.requeue(deliveries)
            return
        self.inbox.handing_back_ended(deliveries)
        self._settled(deliveries)
        self.stats.handed_back += len(deliveries)
        metrics.HANDED_BACK.labels(self.queue.main, reason).inc(len(deliveries))

    async def requeue(self, deliveries: Sequence[Delivery]) -> None:
        """Give deliveries back with a nack (counted by RabbitMQ 3.x): only when handing
        them back failed. If even that fails the channel is gone, and so is the session;
        until then they stay marked, so that no `multiple` ack covers them."""
        try:
            assert self._channel is not None
            for delivery in deliveries:
                await self._channel.requeue(delivery.delivery_tag)
        except Exception as error:  # noqa: BLE001 - the channel is gone: the broker has them back
            log.warning("requeue_failed", queue=self.queue.main, error=describe(error))
            if self._session is not None:
                self._session.lost.set()
            return
        self.inbox.handing_back_ended(deliveries)

    def _hand_back_soon(self, deliveries: list[Delivery], reason: str) -> None:
        self.inbox.handing_back_started(deliveries)
        self._background_task(self.hand_back(deliveries, reason))

    def _background_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("background_step_failed", queue=self.queue.main, error=describe(error))

    def summary(self) -> dict[str, int]:
        return {
            "consumed": self.stats.consumed,
            "dead_lettered": self.stats.dead_lettered,
            "retried": self.stats.retried,
            "handed_back": self.stats.handed_back,
        }


class ConsumerCancelledError(Exception):
    """The broker cancelled a consumer (its queue was deleted): the session is re-made,
    which declares the queue again and consumes from it."""
