"""Periodic housekeeping, run by the dispatch role: identity retention and the
jobs-by-status gauge. Safe with many dispatchers (SKIP LOCKED, idempotent)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from worker import metrics
from worker.db import is_transient
from worker.errors import describe
from worker.settings import Settings
from worker.store.retention import hash_expired_identities

log = structlog.get_logger(__name__)

JOB_STATUSES = ("scheduled", "running", "completed", "failed", "cancelled")


class Maintenance:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, interval: float = 60.0) -> None:
        self.pool = pool
        self.key = settings.identity_hash_key.get_secret_value().encode()
        self.retention = settings.identity_retention
        self.interval = interval

    async def run_once(self) -> int:
        """One round; returns how many jobs had their identities hashed."""
        hashed_jobs = 0
        async with self.pool.acquire() as connection:
            while True:
                jobs, identities = await hash_expired_identities(connection, self.key, self.retention)
                if not jobs:
                    break
                hashed_jobs += jobs
                log.info("identities_hashed", jobs=jobs, identity_count=identities)
            counts = {
                row["status"]: row["n"]
                for row in await connection.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
            }
        for status in JOB_STATUSES:
            metrics.JOBS_BY_STATUS.labels(status).set(counts.get(status, 0))
        return hashed_jobs

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.run_once()
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning("maintenance_deferred", error=describe(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
