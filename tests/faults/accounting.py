"""The books after a fault: every accepted request is one job, ended, counted once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Accounting:
    accepted: int
    jobs: int
    terminal: int
    completed: int
    lost: int
    duplicated: int
    overcounted_products: int
    identity_mismatches: int

    def line(self, label: str) -> str:
        return (
            f"[{label}] accepted={self.accepted} jobs={self.jobs} terminal={self.terminal} "
            f"completed={self.completed} lost={self.lost} duplicated={self.duplicated} "
            f"overcounted_products={self.overcounted_products} identity_mismatches={self.identity_mismatches}"
        )


async def account(pool: asyncpg.Pool, request_ids: Sequence[str]) -> Accounting:
    ids = list(set(request_ids))
    rows = await pool.fetch(
        "SELECT request_id, count(*) AS n, min(status) AS status FROM jobs"
        " JOIN unnest($1::text[]) AS r(request) ON r.request = request_id GROUP BY request_id",
        ids,
    )
    terminal = sum(1 for row in rows if row["status"] in {"completed", "failed", "cancelled"})
    completed = sum(1 for row in rows if row["status"] == "completed")
    overcounted = await pool.fetchval(
        "SELECT count(*) FROM product_status ps JOIN jobs j ON j.id = ps.job_id"
        " JOIN unnest($1::text[]) AS r(request) ON r.request = j.request_id"
        " WHERE ps.chunks_success + ps.chunks_failed > ps.chunks_total",
        ids,
    )
    mismatched = await pool.fetchval(
        "SELECT count(*) FROM jobs j JOIN unnest($1::text[]) AS r(request) ON r.request = j.request_id"
        " WHERE j.identity_count <> (SELECT count(*) FROM job_identities ji WHERE ji.job_id = j.id)",
        ids,
    )
    return Accounting(
        accepted=len(ids),
        jobs=sum(row["n"] for row in rows),
        terminal=terminal,
        completed=completed,
        lost=len(ids) - terminal,
        duplicated=sum(row["n"] - 1 for row in rows),
        overcounted_products=int(overcounted),
        identity_mismatches=int(mismatched),
    )


async def settle(pool: asyncpg.Pool, request_ids: Sequence[str], timeout: float) -> Accounting:
    """Wait until nothing is lost (or the time is up); returns the final books."""
    deadline = time.monotonic() + timeout
    ids = list(set(request_ids))
    # Polled with one count; the full books (a look-up per job into its identities) once at
    # the end. Ids are joined, never `= ANY(array)` per row: over 50,000 jobs that scan is
    # quadratic, and the books took longer than the jobs.
    while time.monotonic() < deadline:
        ended = await pool.fetchval(
            "SELECT count(DISTINCT request_id) FROM jobs"
            " JOIN unnest($1::text[]) AS r(request) ON r.request = request_id"
            " WHERE status IN ('completed', 'failed', 'cancelled')",
            ids,
        )
        if ended >= len(ids):
            break
        await asyncio.sleep(1.0)
    return await account(pool, request_ids)
