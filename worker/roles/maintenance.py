"""Maintenance role: identity retention, in bounded steps; due dates (job.at_risk and
job.overdue events, once each per job); the active-jobs and due-date gauges; the console
overview's summary of settled jobs (worker.store.overview_summary).

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
from worker.store.due_dates import DueCounts, due_counts, tell_due_jobs
from worker.store.outbox import pending_count
from worker.store.overview_summary import settle
from worker.store.reconcile import active_job_counts
from worker.store.retention import hash_expired_identities

log = structlog.get_logger(__name__)

STEPS_PER_ROUND = 20
# Jobs the console overview's summary goes past per round (a step of 100,000 takes ~1 s).
SETTLE_STEP = 100_000


class MaintenanceRole(PeriodicRole):
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        hash_key: bytes,
        retention: timedelta,
        step: int,
        interval: float,
        at_risk_margin: timedelta = timedelta(days=5),
    ) -> None:
        super().__init__("maintenance", interval)
        self.pool = pool
        self.key = hash_key
        self.retention = retention
        self.step = step
        self.at_risk_margin = at_risk_margin
        self.hashed_jobs = 0
        self.due_told = 0
        self._due_projects: set[str] = set()

    def summary(self) -> dict[str, int]:
        return {"identities_hashed_jobs": self.hashed_jobs, "due_date_events": self.due_told}

    async def tick(self, session: Session) -> bool:
        jobs = identities = 0
        async with self.pool.acquire() as connection:
            for _ in range(STEPS_PER_ROUND):
                done, hashed = await hash_expired_identities(connection, self.key, self.retention, self.step)
                jobs += done
                identities += hashed
                if hashed < self.step and not done:
                    break
            at_risk, overdue = await tell_due_jobs(connection, self.at_risk_margin, self.step)
            counts = await due_counts(connection, self.at_risk_margin)
            scheduled, running = await active_job_counts(connection)
            settled = await settle(connection, SETTLE_STEP)
            metrics.OUTBOX_PENDING.set(await pending_count(connection))
        self._export_due(counts)
        if at_risk or overdue:
            self.due_told += at_risk + overdue
            log.info("due_dates_told", at_risk=at_risk, overdue=overdue)
        metrics.JOBS_BY_STATUS.labels(JobStatus.SCHEDULED).set(scheduled)
        metrics.JOBS_BY_STATUS.labels(JobStatus.RUNNING).set(running)
        if identities:
            self.hashed_jobs += jobs
            log.info("identities_hashed", jobs=jobs, identity_count=identities)
        busy = identities >= self.step * STEPS_PER_ROUND or at_risk + overdue >= self.step
        return busy or settled >= SETTLE_STEP

    def _export_due(self, counts: DueCounts) -> None:
        projects = set(counts.at_risk) | set(counts.overdue)
        for project in projects | self._due_projects:  # a project no longer listed goes to 0
            metrics.JOBS_AT_RISK.labels(project).set(counts.at_risk.get(project, 0))
            metrics.JOBS_OVERDUE.labels(project).set(counts.overdue.get(project, 0))
        self._due_projects = projects
