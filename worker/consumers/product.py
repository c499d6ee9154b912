"""Product consumer: runs a built-in handler on each task of `deletion.product.<name>` and
publishes the outcome to `deletion.acks` (the same path external products use)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg
import orjson
import structlog

from schemas import ProductTask
from worker import metrics
from worker.broker import Outgoing, Publisher
from worker.consumers.base import (
    DONE,
    BatchConsumer,
    ConsumerOptions,
    DeadLetter,
    Delivery,
    Disposition,
    Retry,
    parse_body,
)
from worker.errors import PermanentError, TransientError, describe
from worker.handlers.base import Handler, ItemResult, failed_items
from worker.store.acks import cancelled_jobs, mark_running
from worker.topology import QueueNames

log = structlog.get_logger(__name__)

RUNNING_MARK_AFTER_SECONDS = 1.0
# Tasks are parsed a few megabytes of JSON at a time: a batch can hold the chunks of
# several 100,000-identity jobs, and parsing all of it at once would cost hundreds of MB.
MAX_PARSED_BYTES = 4 * 1024 * 1024


def parse_groups(batch: Sequence[Delivery], max_bytes: int) -> list[list[tuple[int, Delivery]]]:
    """Consecutive groups of deliveries of at most `max_bytes` of body (at least one each)."""
    groups: list[list[tuple[int, Delivery]]] = [[]]
    size = 0
    for index, message in enumerate(batch):
        if groups[-1] and size + len(message.body) > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append((index, message))
        size += len(message.body)
    return groups


class ProductConsumer(BatchConsumer):
    def __init__(
        self,
        names: QueueNames,
        publisher: Publisher,
        options: ConsumerOptions,
        *,
        pool: asyncpg.Pool,
        product: str,
        handler: Handler,
        acks_queue: str,
        timeout: float,
        concurrency: int,
    ) -> None:
        super().__init__(names, publisher, options)
        self.pool = pool
        self.product = product
        self.handler = handler
        self.acks_queue = acks_queue
        self.timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)

    async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
        dispositions: list[Disposition] = [DONE] * len(batch)
        acks: list[Outgoing] = []
        for group in parse_groups(batch, MAX_PARSED_BYTES):
            await self._handle_group(group, dispositions, acks)
        await self.publisher.publish(acks)
        return dispositions

    async def _handle_group(
        self, group: list[tuple[int, Delivery]], dispositions: list[Disposition], acks: list[Outgoing]
    ) -> None:
        tasks: dict[int, ProductTask] = {}
        for index, message in group:
            task = parse_body(ProductTask, message.body)
            if isinstance(task, DeadLetter):
                dispositions[index] = task
            elif task.product != self.product:
                dispositions[index] = DeadLetter(f"wrong product: task for {task.product!r} on this queue")
            else:
                tasks[index] = task
        if not tasks:
            return
        job_ids = sorted({item["jobId"] for task in tasks.values() for item in task.items})
        async with self.pool.acquire() as connection:
            cancelled = await cancelled_jobs(connection, job_ids)
        outcomes = await asyncio.gather(*(self._run(task, cancelled) for task in tasks.values()))
        for index, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, Retry):
                dispositions[index] = outcome
            else:
                acks.append(outcome)

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

    async def _run(self, task: ProductTask, cancelled: set[int]) -> Outgoing | Retry:
        live = [item for item in task.items if item["jobId"] not in cancelled]
        results: dict[int, ItemResult] = {}
        if live:
            started = time.perf_counter()
            outcome = "success"
            try:
                async with self._limit:
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
                duration = time.perf_counter() - started
                metrics.HANDLER_DURATION.labels(self.product, outcome).observe(duration)
        missing = ItemResult("failed", "no result from handler")
        ack = {
            "taskId": task.task_id,
            "product": self.product,
            "results": [
                {"jobId": item["jobId"], "status": "cancelled", "error": None}
                if item["jobId"] in cancelled
                else {
                    "jobId": item["jobId"],
                    "status": results.get(item["jobId"], missing).status,
                    "error": results.get(item["jobId"], missing).error,
                }
                for item in task.items
            ],
        }
        return Outgoing(
            routing_key=self.acks_queue,
            body=orjson.dumps(ack),  # the ProductAck schema; plain dicts are much cheaper per item
            message_id=task.task_id,
        )
