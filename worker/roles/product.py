"""Product role: runs a built-in handler on each task of `deletion.product.<name>` and
publishes the outcome to `deletion.acks` (the same path external products use).

Tasks run concurrently (DELETION_HANDLER_CONCURRENCY) and each is settled the moment it
is done: its acknowledgement (or retry copy) confirmed, then its delivery acked on its
own. A slow or dead product therefore never holds finished work, and no delivery is
held longer than the handler's time limit plus the wait for a free slot, far inside the
broker's consumer timeout. The window is a couple of tasks per slot, and a task is at
most DELETION_TASK_MAX_BYTES, so the role's memory is bounded by bytes.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import structlog

from schemas import AckResult, ProductTask
from schemas.status import ChunkStatus
from schemas.wire import ack_message
from worker import metrics, tracing
from worker.amqp import Delivery, Outgoing, QueueNames, is_broker_failure
from worker.errors import FailureClass, PermanentError, TransientError, classify, describe
from worker.handlers.base import Handler, ItemResult, failed_items
from worker.retry import RECONNECT_POLICY
from worker.roles.base import Session
from worker.roles.batch import DeadLetter, Retry, parse_body
from worker.roles.consuming import ConsumerOptions, QueueRole
from worker.store.product import cancelled_jobs, mark_running

log = structlog.get_logger(__name__)

RUNNING_MARK_AFTER_SECONDS = 1.0


class ProductRole(QueueRole):
    def __init__(
        self,
        queue: QueueNames,
        options: ConsumerOptions,
        *,
        pool: asyncpg.Pool,
        product: str,
        handler: Handler,
        acks_queue: str,
        timeout: float,
        concurrency: int,
    ) -> None:
        super().__init__(f"product:{product}", queue, options)
        self.pool = pool
        self.product = product
        self.handler = handler
        self.acks_queue = acks_queue
        self.timeout = timeout
        self.concurrency = concurrency

    async def consume_loop(self, session: Session, stopping: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        try:
            while await self.wait_for_delivery(session, stopping):
                await slots.acquire()
                if self.interrupted(session, stopping):
                    slots.release()
                    break
                [delivery] = self.take(1, self.options.window_bytes)
                self.state.busy()
                task = asyncio.create_task(self._one(delivery, session, stopping))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _t: slots.release())
                task.add_done_callback(lambda _t: self._idle_if_done(running))
            if running and stopping.is_set() and not session.lost.is_set():
                await asyncio.gather(*running, return_exceptions=True)  # the tasks in hand finish
        finally:
            for task in running:
                task.cancel()

    async def close(self) -> None:
        await self.handler.close()

    def _idle_if_done(self, running: set[asyncio.Task[None]]) -> None:
        if not running and not self.inbox.waiting:
            self.state.idle()

    async def _one(self, delivery: Delivery, session: Session, stopping: asyncio.Event) -> None:
        # Its acknowledgement is published inside the span: the acks role sees the same trace.
        with tracing.message_span(self.queue.main, delivery):
            await self._settle_one(delivery, session, stopping)

    async def _settle_one(self, delivery: Delivery, session: Session, stopping: asyncio.Event) -> None:
        try:
            outgoing = await self._outcome(delivery, stopping)
            if outgoing is None:
                return  # handed back: the database stayed away too long
            await session.publisher.publish([outgoing])
            await self.ack([delivery])
            self.state.advanced()
        except Exception as error:
            if is_broker_failure(error):
                session.lost.set()  # the channel is gone: every delivery returns to the queue
                return
            # Its acknowledgement or retry copy came back unroutable, or the handler failed in
            # a way it did not classify (nacks are sent again by the publisher; one that
            # outlasts the retry window is a broker failure, above): the task goes back to the
            # queue rather than sit unacked until the broker's consumer timeout.
            log.exception("task_settle_failed", product=self.product, error=describe(error))
            await self.requeue([delivery])

    async def _outcome(self, delivery: Delivery, stopping: asyncio.Event) -> Outgoing | None:
        task = parse_body(ProductTask, delivery.body)
        if isinstance(task, DeadLetter):
            return self.dead_copy(delivery, task.reason)
        if task.product != self.product:
            return self.dead_copy(delivery, f"wrong product: task for {task.product!r} on this queue")
        job_ids = sorted({item["jobId"] for item in task.items})
        cancelled = await self._cancelled(job_ids, stopping)
        if cancelled is None:
            await self.hand_back([delivery], "unavailable")
            return None
        outcome = await self._run(task, cancelled)
        if isinstance(outcome, Retry):
            return self.retry_copy(delivery, outcome.reason)
        return Outgoing(routing_key=self.acks_queue, body=outcome, message_id=task.task_id)

    async def _cancelled(self, job_ids: list[int], stopping: asyncio.Event) -> set[int] | None:
        """Which of these jobs were cancelled (their items are acknowledged without work);
        None when the database stays unreachable past the hold time."""
        deadline = time.monotonic() + self.options.unavailable_hold_seconds
        attempt = 0
        while True:
            try:
                async with self.pool.acquire() as connection:
                    found = await cancelled_jobs(connection, job_ids)
            except Exception as error:
                if classify(error) not in (FailureClass.UNAVAILABLE, FailureClass.CONTENTION):
                    raise
                attempt += 1
                self.state.waiting("database")
                if time.monotonic() > deadline or stopping.is_set():
                    return None
                log.warning("database_unavailable", role=self.name, error=describe(error), attempt=attempt)
                await asyncio.sleep(RECONNECT_POLICY.delay_ms(attempt) / 1000)
            else:
                self.state.waiting(None)
                return found

    async def _run_handler(self, task: ProductTask) -> dict[int, ItemResult]:
        """Run the handler within its time limit. Products are marked `running` only when a
        task takes a while: for the many quick ones, that write would be overwritten by the
        acknowledgement a moment later."""
        running = asyncio.ensure_future(asyncio.wait_for(self.handler.run(task), self.timeout))
        done, _ = await asyncio.wait({running}, timeout=RUNNING_MARK_AFTER_SECONDS)
        if not done:
            try:
                async with self.pool.acquire() as connection:
                    await mark_running(connection, self.product, [item["jobId"] for item in task.items])
            except Exception as error:  # noqa: BLE001 - a missed `running` mark is cosmetic
                log.warning("running_mark_failed", product=self.product, error=describe(error))
        return await running

    async def _run(self, task: ProductTask, cancelled: set[int]) -> bytes | Retry:
        live = [item for item in task.items if item["jobId"] not in cancelled]
        results: dict[int, ItemResult] = {}
        if live:
            started = time.perf_counter()
            outcome = "success"
            try:
                results = await self._run_handler(task.model_copy(update={"items": live}))
            except (TransientError, TimeoutError) as error:
                outcome = "transient"
                reason = describe(error) if isinstance(error, TransientError) else "handler time limit exceeded"
                log.warning("task_transient_failure", product=self.product, task_id=task.task_id, reason=reason)
                return Retry(reason)
            except PermanentError as error:
                outcome = "failed"
                results = failed_items(task, error)
                log.warning("task_failed", product=self.product, task_id=task.task_id, reason=describe(error))
            except Exception as error:
                outcome = "error"
                log.exception("handler_raised", product=self.product, task_id=task.task_id, error=describe(error))
                return Retry(f"handler raised {describe(error)}")
            finally:
                metrics.HANDLER_DURATION.labels(self.product, outcome).observe(time.perf_counter() - started)
        return ack_message(task.task_id, self.product, _results(task, cancelled, results))


def _results(task: ProductTask, cancelled: set[int], results: dict[int, ItemResult]) -> list[AckResult]:
    missing = ItemResult(ChunkStatus.FAILED, "no result from handler")
    acks: list[AckResult] = []
    for item in task.items:
        job_id = item["jobId"]
        if job_id in cancelled:
            acks.append({"jobId": job_id, "status": "cancelled", "error": None})
        else:
            acks.append(_ack_result(job_id, results.get(job_id, missing)))
    return acks


def _ack_result(job_id: int, result: ItemResult) -> AckResult:
    """An item's result; counts and failed identities only where the handler gave them, so
    that an ordinary result is what every earlier release sent."""
    failed = result.status == "failed"
    ack: AckResult = {"jobId": job_id, "status": "failed" if failed else "success", "error": result.error}
    if result.deleted is not None:
        ack["deleted"] = result.deleted
    if result.not_found is not None:
        ack["notFound"] = result.not_found
    if failed and result.failed_identities:
        ack["failedIdentities"] = list(result.failed_identities)
    return ack
