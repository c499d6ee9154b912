"""Dispatch role: fans due jobs out to every product queue.

Woken by NOTIFY when intake or the API commits new jobs, and by a timer for jobs whose
`startAt` arrives. Each round claims due jobs (SKIP LOCKED, so any number of
dispatchers can run; bounded by job count and identities), commits their chunks with an
outbox row per plan, and then publishes the plans (worker.roles.relay). Plans left in
the outbox by a dispatcher that died are published by any dispatcher once their lease
has run out.

The LISTEN connection is its own, watched: when its backend goes away it is made again
(until then the interval's polling still finds new jobs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from schemas.status import JobStatus
from worker import metrics, tracing
from worker.aio import wait_first
from worker.errors import describe
from worker.roles.base import Session
from worker.roles.loop import PeriodicRole
from worker.roles.relay import TaskRelay
from worker.store.dispatch import claim_due_jobs, plan_round, record_dispatch
from worker.store.jobs import trace_parents
from worker.store.outbox import OutboxPlan, claim_expired

log = structlog.get_logger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]
EXPIRED_PLANS_PER_ROUND = 50


class DispatchRole(PeriodicRole):
    def __init__(
        self,
        pool: asyncpg.Pool,
        relay: TaskRelay,
        connect_listener: Connect,
        *,
        products: list[str],
        batch: int,
        max_identities: int,
        chunk_size: int,
        task_max_items: int,
        task_max_bytes: int,
        interval: float,
        lease_seconds: float,
    ) -> None:
        super().__init__("dispatch", interval)
        self.pool = pool
        self.relay = relay
        self.connect_listener = connect_listener
        self.products = products
        self.batch = batch
        self.max_identities = max_identities
        self.chunk_size = chunk_size
        self.task_max_items = task_max_items
        self.task_max_bytes = task_max_bytes
        self.lease_seconds = lease_seconds
        self.dispatched = 0
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._next_expiry_check = 0.0
        self._last_session: Session | None = None

    def wake(self, *_args: object) -> None:
        self._wake.set()

    def summary(self) -> dict[str, int]:
        return {"dispatched": self.dispatched}

    async def tick(self, session: Session) -> bool:
        await self._ensure_listener(session)
        self._wake.clear()
        if session is not self._last_session:
            # Once per session: a refused plan is not retried in a loop on the same one.
            self._last_session = session
            unsent = self.relay.take_unsent()
            if unsent:
                log.warning("outbox_plans_retried", count=len(unsent))
                await self.relay.publish(unsent, session.publisher)
        claimed = await self.dispatch_once(session)
        if time.monotonic() >= self._next_expiry_check or not claimed:
            self._next_expiry_check = time.monotonic() + self.lease_seconds / 4
            async with self.pool.acquire() as connection:
                expired = await claim_expired(connection, EXPIRED_PLANS_PER_ROUND, self.lease_seconds)
            if expired:
                log.warning("outbox_plans_republished", count=len(expired))
                await self.relay.publish(expired, session.publisher)
                return True
        return claimed > 0

    async def dispatch_once(self, session: Session) -> int:
        """One round: returns how many jobs it dispatched."""
        started = time.perf_counter()
        async with self.pool.acquire() as connection, connection.transaction():
            jobs = await claim_due_jobs(connection, self.batch, self.max_identities)
            if not jobs:
                return 0
            round_ = plan_round(jobs, self.products, self.chunk_size, self.task_max_items, self.task_max_bytes)
            ended = await record_dispatch(connection, round_, self.lease_seconds)
            plans = [OutboxPlan(plan.plan_id, plan.task_ids) for plan in round_.plans]
            self.relay.remember(plans)
            # The requests' traces, for the round's span to link (read only when tracing is on).
            traces = await trace_parents(connection, [job.job_id for job in jobs]) if tracing.enabled() else []
        committed = time.perf_counter()
        with tracing.linked_span("dispatch", traces):
            tasks = await self.relay.publish(plans, session.publisher)
        self.dispatched += len(jobs)
        metrics.JOB_TRANSITIONS.labels(JobStatus.RUNNING).inc(len(jobs) - len(ended))
        log.info(
            "jobs_dispatched",
            seconds=round(time.perf_counter() - started, 4),
            commit_seconds=round(committed - started, 4),
            count=len(jobs),
            tasks=tasks,
            identity_count=sum(job.identity_count for job in jobs),
            ended_at_once=len(ended),
            skipped_products=sum(len(p) for p in round_.skipped.values()),
            job_ids=[job.job_id for job in jobs[:50]],
        )
        return len(jobs)

    async def _ensure_listener(self, session: Session) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = None
        try:
            listener = await self.connect_listener()
            await listener.add_listener(session.topology.due_channel, self.wake)
        except Exception as error:  # noqa: BLE001 - polling at the interval goes on without it
            log.warning("listen_unavailable", error=describe(error))
            return
        self._listener = listener
        log.debug("listening", channel=session.topology.due_channel)

    async def wait_for_work(self, stopping: asyncio.Event) -> None:
        await wait_first(self._wake.wait(), stopping.wait(), timeout=self.interval)

    async def close(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        self._listener = None
