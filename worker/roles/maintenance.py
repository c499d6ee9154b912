"""Maintenance role: identity retention, in bounded steps, and the active-jobs gauges.

Its own role (not a passenger of dispatch), so that its work cannot take dispatching
with it, and each step holds at most DELETION_RETENTION_STEP identity values.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import structlog

from schemas.status import JobStatus
from worker import metrics
from worker.roles.base import Session
from worker.roles.loop import PeriodicRole
from worker.store.outbox import pending_count
from worker.store.reconcile import active_job_counts
from worker.store.retention import hash_expired_identities

log = structlog.get_logger(__name__)

STEPS_PER_ROUND = 20


class MaintenanceRole(PeriodicRole):
    def __init__(
        self, pool: asyncpg.Pool, *, hash_key: bytes, retention: timedelta, step: int, interval: float
    ) -> None:
        super().__init__("maintenance", interval)
        self.pool = pool
        self.key = hash_key
        self.retention = retention
        self.step = step
        self.hashed_jobs = 0

    def summary(self) -> dict[str, int]:
        return {"identities_hashed_jobs": self.hashed_jobs}

    async def tick(self, session: Session) -> bool:
        jobs = identities = 0
        async with self.pool.acquire() as connection:
            for _ in range(STEPS_PER_ROUND):
                done, hashed = await hash_expired_identities(connection, self.key, self.retention, self.step)
                jobs += done
                identities += hashed
                if hashed < self.step and not done:
                    break
            scheduled, running = await active_job_counts(connection)
            metrics.OUTBOX_PENDING.set(await pending_count(connection))
        metrics.JOBS_BY_STATUS.labels(JobStatus.SCHEDULED).set(scheduled)
        metrics.JOBS_BY_STATUS.labels(JobStatus.RUNNING).set(running)
        if identities:
            self.hashed_jobs += jobs
            log.info("identities_hashed", jobs=jobs, identity_count=identities)
        return identities >= self.step * STEPS_PER_ROUND
