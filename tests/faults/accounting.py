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
        " WHERE request_id = ANY($1::text[]) GROUP BY request_id",
        ids,
    )
    terminal = sum(1 for row in rows if row["status"] in {"completed", "failed", "cancelled"})
    completed = sum(1 for row in rows if row["status"] == "completed")
    overcounted = await pool.fetchval(
        "SELECT count(*) FROM product_status ps JOIN jobs j ON j.id = ps.job_id"
        " WHERE j.request_id = ANY($1::text[]) AND ps.chunks_success + ps.chunks_failed > ps.chunks_total",
        ids,
    )
    mismatched = await pool.fetchval(
        "SELECT count(*) FROM jobs j WHERE j.request_id = ANY($1::text[])"
        " AND j.identity_count <> (SELECT count(*) FROM job_identities ji WHERE ji.job_id = j.id)",
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
    books = await account(pool, request_ids)
    while books.lost and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        books = await account(pool, request_ids)
    return books
