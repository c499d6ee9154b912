"""Dispatch role: fans due jobs out to every product queue.

Woken by NOTIFY when intake or the API commits new jobs, and by a timer for jobs whose
`startAt` arrives. Each round claims due jobs (SKIP LOCKED, so any number of
dispatchers can run), records their chunks, publishes the tasks with confirms and only
then commits; see worker.store.dispatch for why that makes dispatch exactly-once in
the status tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import orjson
import structlog

from worker import metrics
from worker.broker import Outgoing, Publisher
from worker.store.dispatch import (
    DueJob,
    ProductTaskRecord,
    TaskPlan,
    claim_due_jobs,
    load_identities,
    plan_tasks,
    product_tasks,
    record_dispatch,
)
from worker.store.jobs import due_channel
from worker.topology import Topology

log = structlog.get_logger(__name__)


def task_items(plan: TaskPlan, jobs: dict[int, DueJob], identities: dict[int, list[tuple[str, str]]]) -> bytes:
    """The `items` of a product task as JSON (the ProductTask schema). Built from plain
    dicts: this runs for every identity of every job, and model objects would cost several
    times more. Every product gets the same items, so they are encoded once per plan."""
    items = []
    for chunk in plan.chunks:
        job = jobs[chunk.job_id]
        values = identities[chunk.job_id][chunk.seq_from : chunk.seq_to]
        items.append(
            {
                "jobId": job.job_id,
                "projectId": job.project_id,
                "datasetId": job.dataset_id,
                "identities": [{"namespace": {"code": ns}, "id": value} for ns, value in values],
            }
        )
    return orjson.dumps(items)


def task_message(record: ProductTaskRecord, items: bytes) -> bytes:
    """The whole task: its own id and product around the plan's encoded items."""
    head = orjson.dumps({"taskId": str(record.task_id), "product": record.product})
    return head[:-1] + b',"items":' + items + b"}"


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        topology: Topology,
        *,
        batch: int,
        chunk_size: int,
        task_max_items: int,
        interval: float,
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.topology = topology
        self.batch = batch
        self.chunk_size = chunk_size
        self.task_max_items = task_max_items
        self.interval = interval
        self.dispatched = 0
        self._wake = asyncio.Event()
        self._busy = False

    def wake(self, *_args: object) -> None:
        self._wake.set()

    @property
    def busy(self) -> bool:
        return self._busy

    async def dispatch_once(self) -> int:
        """One round: returns how many jobs it dispatched."""
        products = list(self.topology.products)
        started = time.perf_counter()
        async with self.pool.acquire() as connection, connection.transaction():
            jobs = await claim_due_jobs(connection, self.batch)
            if not jobs:
                return 0
            by_id = {job.job_id: job for job in jobs}
            identities = await load_identities(connection, list(by_id))
            plans = plan_tasks(jobs, self.chunk_size, self.task_max_items)
            tasks = product_tasks(plans, products)
            await record_dispatch(connection, jobs, tasks)
            encoded = {plan: task_items(plan, by_id, identities) for plan in plans}
            await self.publisher.publish(
                [
                    Outgoing(
                        exchange=self.topology.products_exchange,
                        routing_key=task.product,
                        body=task_message(task, encoded[task.plan]),
                        message_id=str(task.task_id),
                        queue_label=self.topology.product(task.product).main,
                    )
                    for task in tasks
                ]
            )
        self.dispatched += len(jobs)
        status = "running" if products else "completed"
        metrics.JOB_TRANSITIONS.labels(status).inc(len(jobs))
        log.info(
            "jobs_dispatched",
            seconds=round(time.perf_counter() - started, 4),
            count=len(jobs),
            tasks=len(tasks),
            identity_count=sum(job.identity_count for job in jobs),
            status=status,
            job_ids=[job.job_id for job in jobs[:50]],
        )
        return len(jobs)

    async def run(self, stopping: asyncio.Event) -> None:
        listener = await self.pool.acquire()
        channel = due_channel(self.topology.prefix)
        try:
            await listener.add_listener(channel, self.wake)
            while not stopping.is_set():
                self._wake.clear()
                self._busy = True
                try:
                    count = await self.dispatch_once()
                finally:
                    self._busy = False
                if count >= self.batch:
                    continue  # more may be due right now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait(stopping), self.interval)
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(channel, self.wake)
            await self.pool.release(listener)

    async def _wait(self, stopping: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
