"""One broker session of a product worker: consume, batch, handle, settle each task.

A task is settled on its own, the moment its batch is done: its acknowledgement (or retry
copy, or dead letter) is published and confirmed by the broker first, and only then is the
task acked. A process that dies in between leaves the task on the queue, and it is
handled again: deleting twice is harmless, and so is acknowledging twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from schemas import ProductTask
from worker import tracing
from worker.amqp import AmqpConsumerChannel, Delivery, Outgoing, Publisher, is_broker_failure
from worker.errors import PermanentError, TransientError, describe, describe_validation_error
from worker.sdk.copies import Copies
from worker.sdk.model import Item, Result, ack_body, check_results, failed_results, items_of

log = structlog.get_logger(__name__)

Handle = Callable[[list[Item]], Awaitable[Sequence[Result]]]


@dataclass
class Counts:
    sessions: int = 0  # broker sessions that got as far as consuming (more than one: reconnected)
    tasks: int = 0  # acknowledged: every item succeeded
    failed: int = 0  # acknowledged with at least one failed item
    retried: int = 0
    dead_lettered: int = 0
    handed_back: int = 0
    unfinished: int = 0  # still in hand when the shutdown timeout ran out (back to the queue)


@dataclass(frozen=True)
class Limits:
    window: int
    batch_size: int
    batch_wait_s: float
    concurrency: int
    timeout_s: float


class Session:
    def __init__(
        self,
        product: str,
        handle: Handle,
        *,
        limits: Limits,
        copies: Copies,
        acks_queue: str,
        publisher: Publisher,
        channel: AmqpConsumerChannel,
        lost: asyncio.Event,
        counts: Counts,
    ) -> None:
        self.product = product
        self.handle = handle
        self.limits = limits
        self.copies = copies
        self.acks_queue = acks_queue
        self.publisher = publisher
        self.channel = channel
        self.lost = lost
        self.counts = counts
        self.waiting: deque[Delivery] = deque()
        self.arrived = asyncio.Event()

    def _on_delivery(self, delivery: Delivery) -> None:
        self.waiting.append(delivery)
        self.arrived.set()

    def _interrupted(self, stopping: asyncio.Event) -> bool:
        return stopping.is_set() or self.lost.is_set() or self.channel.cancelled_by_broker.is_set()

    async def _wait(self, stopping: asyncio.Event) -> bool:
        """Until a task waits (True) or the session must end (False)."""
        while not self.waiting:
            if self._interrupted(stopping):
                return False
            self.arrived.clear()
            waiters = [self.arrived.wait(), stopping.wait(), self.lost.wait(), self.channel.cancelled_by_broker.wait()]
            futures = [asyncio.ensure_future(waiter) for waiter in waiters]
            try:
                await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for future in futures:
                    future.cancel()
        return not self._interrupted(stopping)

    async def run(self, stopping: asyncio.Event, started: asyncio.Event, shutdown_timeout: float) -> None:
        """Consume until `stopping` (then finish what is in hand, within `shutdown_timeout`)
        or the session is lost (then drop it: the broker has every unacked task back)."""
        await self.channel.set_window(self.limits.window)
        await self.channel.consume(self.copies.queue.main, self._on_delivery)
        started.set()
        self.counts.sessions += 1
        slots = asyncio.Semaphore(self.limits.concurrency)
        running: set[asyncio.Task[None]] = set()
        try:
            while await self._wait(stopping):
                await slots.acquire()
                if self._interrupted(stopping):
                    slots.release()
                    break
                if self.limits.batch_wait_s > 0 and len(self.waiting) < self.limits.batch_size:
                    await asyncio.sleep(self.limits.batch_wait_s)  # let a few more tasks join the batch
                batch = [self.waiting.popleft() for _ in range(min(self.limits.batch_size, len(self.waiting)))]
                task = asyncio.create_task(self._batch(batch))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _task: slots.release())
            if stopping.is_set() and not self.lost.is_set():
                await self._stop(running, shutdown_timeout)
        finally:
            started.clear()
            for task in running:
                task.cancel()

    async def _stop(self, running: set[asyncio.Task[None]], timeout: float) -> None:
        """No more deliveries; buffered tasks go back to the queue, tasks in hand finish."""
        await self.channel.cancel()
        await asyncio.sleep(0)  # deliveries read before the cancel was confirmed are queued as tasks
        await asyncio.sleep(0)
        await self._hand_back(list(self.waiting))
        self.waiting.clear()
        if running:
            _, unfinished = await asyncio.wait(set(running), timeout=timeout)
            self.counts.unfinished += len(unfinished)

    async def _hand_back(self, deliveries: list[Delivery]) -> None:
        # Republished, then acked: a nack or a closed channel would count towards the
        # queue's delivery limit (RabbitMQ 3.x quorum queues), and restarts would spend it.
        if not deliveries:
            return
        try:
            await self.publisher.publish([self.copies.hand_back(delivery) for delivery in deliveries])
            for delivery in deliveries:
                await self.channel.ack(delivery.delivery_tag)
            self.counts.handed_back += len(deliveries)
        except Exception as error:  # noqa: BLE001 - closing the channel gives them back instead
            log.warning("hand_back_failed", product=self.product, count=len(deliveries), error=describe(error))

    async def _batch(self, batch: list[Delivery]) -> None:
        # One span for the batch, linking each task's dispatch; the acknowledgements are
        # published inside it, so the acks role's span links back to it (tracing off: nothing).
        with tracing.batch_span(self.copies.queue.main, batch):
            await self._settle_batch(batch)

    async def _settle_batch(self, batch: list[Delivery]) -> None:
        try:
            outgoing = await self._outcomes(batch)
        except Exception as error:
            # A result that cannot be encoded (a bug): the tasks go back rather than sit unacked.
            log.exception("task_outcome_failed", product=self.product, error=describe(error))
            try:
                for delivery in batch:
                    await self.channel.requeue(delivery.delivery_tag)
            except Exception:  # noqa: BLE001 - the channel is gone, and the broker has them back
                self.lost.set()
            return
        try:
            refusals = await self.publisher.publish_each(outgoing)
            for delivery, refused in zip(batch, refusals, strict=True):
                if refused is None:
                    await self.channel.ack(delivery.delivery_tag)
                else:
                    # Its acknowledgement or copy came back unroutable (its queue is gone; a
                    # nack is sent again by the publisher, and one that outlasts the retry
                    # window raises instead): the task goes back to the queue now rather
                    # than sit unacked until the broker's consumer timeout.
                    log.warning("task_settle_refused", product=self.product, error=describe(refused))
                    await self.channel.requeue(delivery.delivery_tag)
        except Exception as error:
            if not is_broker_failure(error):
                log.exception("task_settle_failed", product=self.product, error=describe(error))
            self.lost.set()  # the channel is unusable: every unacked task returns to the queue

    async def _outcomes(self, batch: list[Delivery]) -> list[Outgoing]:
        """One message per delivery, in order: its ack, retry copy or dead letter."""
        outgoing: list[Outgoing | None] = [None] * len(batch)
        tasks: list[tuple[int, ProductTask, list[Item]]] = []
        for index, delivery in enumerate(batch):
            task_or_reason = self._parse(delivery)
            if isinstance(task_or_reason, str):
                outgoing[index] = self.copies.dead(delivery, task_or_reason)
                self.counts.dead_lettered += 1
                log.warning(
                    "task_dead_lettered", product=self.product, message_id=delivery.message_id, reason=task_or_reason
                )
            else:
                tasks.append((index, task_or_reason, items_of(task_or_reason)))
        items = [item for _, _, task_items in tasks for item in task_items]
        outcome = await self._run(items) if items else []
        offset = 0
        for index, task, task_items in tasks:
            if isinstance(outcome, str):
                outgoing[index] = self._retry(batch[index], task, outcome)
                continue
            results = outcome[offset : offset + len(task_items)]
            offset += len(task_items)
            if any(result.status == "failed" for result in results):
                self.counts.failed += 1
            else:
                self.counts.tasks += 1
            body = ack_body(task.task_id, self.product, results)
            outgoing[index] = Outgoing(routing_key=self.acks_queue, body=body, message_id=task.task_id)
        return [message for message in outgoing if message is not None]

    def _parse(self, delivery: Delivery) -> ProductTask | str:
        """The task, or (without quoting the body) why it can never be handled."""
        try:
            task = ProductTask.model_validate_json(delivery.body)
        except ValidationError as error:
            if any(item["type"] == "json_invalid" for item in error.errors(include_input=False)):
                return "json: body is not valid JSON"
            return describe_validation_error(error)
        if task.product != self.product:
            return f"wrong product: task for {task.product!r} on this queue"
        return task

    def _retry(self, delivery: Delivery, task: ProductTask, reason: str) -> Outgoing:
        copy, delay = self.copies.retry(delivery, reason)
        if delay is None:
            self.counts.dead_lettered += 1
            log.warning("task_retries_exhausted", product=self.product, task_id=task.task_id, reason=reason)
        else:
            self.counts.retried += 1
            log.info("task_retry", product=self.product, task_id=task.task_id, delay_ms=delay, reason=reason)
        return copy

    async def _run(self, items: list[Item]) -> list[Result] | str:
        """Results in item order, or the reason to retry the whole batch later."""
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                returned = await self.handle(items)
            return check_results(items, returned)
        except TransientError as error:
            log.warning("handle_transient_failure", product=self.product, items=len(items), error=describe(error))
            return f"transient: {describe(error)}"
        except TimeoutError:
            log.warning("handle_timed_out", product=self.product, items=len(items), timeout_s=self.limits.timeout_s)
            return f"handle took longer than {self.limits.timeout_s:g} s"
        except PermanentError as error:
            log.warning("handle_failed", product=self.product, items=len(items), error=describe(error))
            return failed_results(items, describe(error))
        except Exception as error:
            # A bug or an unforeseen failure: retried (and dead-lettered once the attempts are
            # used up, for a replay after the fix), never reported as a failed deletion.
            log.exception("handle_raised", product=self.product, items=len(items), error=describe(error))
            return f"handle raised {describe(error)}"
