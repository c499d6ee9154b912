"""Reconciler role: every non-terminal job either makes progress or is reported stuck.

Each round it
- ends running jobs whose products have all ended (an acknowledgement's process died
  between settling and ending; normally the redelivered batch does this itself);
- sweeps a page of the jobs table, putting jobs on the queue their status needs (jobs
  written by a process of an older release during a rolling upgrade);
- counts the jobs that have not moved for DELETION_STUCK_AFTER, by reason, into the
  `deletion_jobs_stuck` gauge and a `jobs_stuck` log line (`deletion-worker jobs stuck`
  lists them). Plans stuck in the outbox are republished by dispatch; tasks a product
  never acknowledged are not sent again on a guess (the product may simply be slow, or
  its dead letters may need replaying): they are reported.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import asyncpg
import structlog

from worker import metrics
from worker.roles.base import Session
from worker.roles.loop import PeriodicRole
from worker.store.reconcile import finish_ended_jobs, stuck_jobs, sweep_page

log = structlog.get_logger(__name__)

STUCK_REASONS = ("not_dispatched", "unpublished", "awaiting_products")


class ReconcilerRole(PeriodicRole):
    def __init__(self, pool: asyncpg.Pool, *, stuck_after: timedelta, sweep_page_size: int, interval: float) -> None:
        super().__init__("reconciler", interval)
        self.pool = pool
        self.stuck_after = stuck_after
        self.sweep_page_size = sweep_page_size
        self.repaired = 0
        self._sweep_after = 0

    def summary(self) -> dict[str, int]:
        return {"repaired": self.repaired}

    async def tick(self, session: Session) -> bool:
        async with self.pool.acquire() as connection:
            ended = await finish_ended_jobs(connection)
            sweep = await sweep_page(connection, self._sweep_after, self.sweep_page_size)
            stuck = await stuck_jobs(connection, self.stuck_after)
        self._sweep_after = sweep.next_after
        if ended:
            metrics.JOBS_REPAIRED.labels("ended").inc(len(ended))
            log.warning("jobs_ended_by_reconciler", count=len(ended), job_ids=ended[:50])
        for repair, count in (("requeued", sweep.requeued), ("tracked", sweep.tracked), ("retained", sweep.retained)):
            if count:
                metrics.JOBS_REPAIRED.labels(repair).inc(count)
                log.warning("jobs_repaired_by_sweep", repair=repair, count=count)
        self.repaired += len(ended) + sweep.requeued + sweep.tracked + sweep.retained
        by_reason = Counter(job.reason for job in stuck)
        for reason in STUCK_REASONS:
            metrics.JOBS_STUCK.labels(reason).set(by_reason.get(reason, 0))
        if stuck:
            log.warning(
                "jobs_stuck",
                count=len(stuck),
                by_reason=dict(by_reason),
                older_than_s=int(self.stuck_after.total_seconds()),
                job_ids=[job.job_id for job in stuck[:50]],
            )
        return False
