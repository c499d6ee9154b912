"""Retry only what failed: a job's failed chunks go out again, through the task outbox.

One transaction, like a dispatch: each failed chunk of the named products gets a new
task id and goes back to `waiting`, with a task_outbox row of its own (one chunk per
task: a task holds at most one chunk of a job), and the job and its products are
`running` again. The relay of any dispatcher publishes the rows (their lease starts
expired); nothing is published from here. A chunk whose failed identities were named
sends only those (worker.store.outbox.plan_items); one that failed as a whole, all of it.

Races, each settled by the job's row lock (taken first, as a cancel takes it):
- an acknowledgement of the chunk's previous task arriving later names the old task id
  and settles nothing; one of the new task settles it as usual;
- a cancel waits for the retry (or the retry for it, and refuses a cancelled job);
- acknowledgements that end the job's other products check the job's `updated_at`
  (worker.store.acks.FINISH_JOBS): a job retried since they read it is not ended by them;
- retention: the job leaves the retention queue here first (waiting for a retention
  step that holds its row), and a job whose values were hashed already is refused: they
  cannot be sent again.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from schemas.status import JobStatus
from worker.db import retry_contention
from worker.errors import RefusedError
from worker.store.jobs import JobNotFoundError
from worker.store.overview_summary import unsettle

RETRYABLE_JOB_STATUSES = (JobStatus.RUNNING, JobStatus.FAILED)


class RetryRefusedError(RefusedError):
    """Nothing can be sent again (the message says why)."""


@dataclass(frozen=True)
class RetryOutcome:
    job_id: int
    chunks: dict[str, int] = field(default_factory=dict)  # product → chunks sent again
    identities: dict[str, int] = field(default_factory=dict)  # product → identities sent again

    def as_dict(self) -> dict[str, object]:
        return {
            "jobId": self.job_id,
            "status": JobStatus.RUNNING.value,
            "products": [
                {"product": product, "chunks": chunks, "identities": self.identities.get(product, 0)}
                for product, chunks in self.chunks.items()
            ],
        }


async def retry_failed(
    connection: asyncpg.Connection,
    job_id: int,
    products: Sequence[str] | None,
    configured: Sequence[str],
    *,
    project_id: int | None = None,
    notify_channel: str | None = None,
) -> RetryOutcome:
    """Send the failed chunks of `products` (every configured product when None) of a
    running or failed job again. Raises JobNotFoundError or RetryRefusedError."""
    unknown = sorted(set(products or ()) - set(configured))
    if unknown:
        raise RetryRefusedError(f"not a product of this deployment: {', '.join(unknown)}")
    wanted = list(products) if products else list(configured)
    return await retry_contention(lambda: _retry(connection, job_id, wanted, project_id, notify_channel))


async def _retry(
    connection: asyncpg.Connection, job_id: int, products: list[str], project_id: int | None, notify: str | None
) -> RetryOutcome:
    async with connection.transaction():
        await connection.execute("DELETE FROM retention_queue WHERE job_id = $1", job_id)
        job = await connection.fetchrow(
            "SELECT status, project_id, identities_hashed_at, due_at FROM jobs WHERE id = $1 FOR UPDATE", job_id
        )
        if job is None or (project_id is not None and job["project_id"] != project_id):
            raise JobNotFoundError(f"job {job_id} not found")
        if job["status"] not in RETRYABLE_JOB_STATUSES:
            raise RetryRefusedError(f"job {job_id} is {job['status']}: only a running or failed job can be retried")
        await unsettle(connection, [job_id])  # a failed job counted as settled is active again
        hashed = job["identities_hashed_at"] is not None or await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM job_identities WHERE job_id = $1 AND value IS NULL)", job_id
        )
        if hashed:
            raise RetryRefusedError(
                f"job {job_id}: its identity values were replaced by keyed hashes (retention) and cannot be sent"
                " again; make a new request"
            )
        chunks = await connection.fetch(
            "SELECT product, chunk_no, coalesce(identities_failed, seq_to - seq_from) AS failed FROM task_chunks"
            " WHERE job_id = $1 AND status = 'failed' AND product = ANY($2::text[])"
            " ORDER BY product, chunk_no FOR UPDATE",
            job_id,
            products,
        )
        if not chunks:
            raise RetryRefusedError(f"job {job_id}: nothing failed for {', '.join(products)}")
        task_ids = [uuid.uuid4() for _ in chunks]
        await _send_again(connection, job_id, chunks, task_ids)
        await _running_again(connection, job_id, job["due_at"], job["project_id"])
        if notify is not None:
            await connection.execute("SELECT pg_notify($1, '')", notify)
    outcome = RetryOutcome(job_id, dict(Counter(row["product"] for row in chunks)), {})
    for row in chunks:
        outcome.identities[row["product"]] = outcome.identities.get(row["product"], 0) + row["failed"]
    return outcome


async def _send_again(
    connection: asyncpg.Connection, job_id: int, chunks: list[asyncpg.Record], task_ids: list[uuid.UUID]
) -> None:
    """New task ids for the chunks, their products `running` again, an outbox row per chunk."""
    products = [row["product"] for row in chunks]
    await connection.execute(
        "UPDATE task_chunks c SET task_id = r.task_id, status = 'waiting', error = NULL, acked_at = NULL,"
        " retries = coalesce(c.retries, 0) + 1"
        " FROM unnest($2::text[], $3::int[], $4::uuid[]) AS r(product, chunk_no, task_id)"
        " WHERE c.job_id = $1 AND c.product = r.product AND c.chunk_no = r.chunk_no",
        job_id,
        products,
        [row["chunk_no"] for row in chunks],
        task_ids,
    )
    # The failed identities of the chunks sent again no longer count as failed; their
    # acknowledgements count them anew.
    await connection.execute(
        "WITH again AS (SELECT product, count(*)::int AS n, sum(failed)::int AS failed"
        " FROM unnest($2::text[], $3::int[]) AS a(product, failed) GROUP BY product)"
        " UPDATE product_status ps SET status = 'running', chunks_failed = ps.chunks_failed - a.n,"
        " identities_failed = greatest(coalesce(ps.identities_failed, 0) - a.failed, 0), error = NULL,"
        " retries = coalesce(ps.retries, 0) + 1, started_at = now(), finished_at = NULL, created_at = now()"
        " FROM again a WHERE ps.job_id = $1 AND ps.product = a.product",
        job_id,
        products,
        [row["failed"] for row in chunks],
    )
    # Published by a dispatcher's relay: the lease starts expired (worker.store.outbox.claim_expired).
    await connection.executemany(
        "INSERT INTO task_outbox (plan_id, task_ids, products, claimed_until) VALUES ($1, $2, $3, '-infinity')",
        [
            (
                uuid.uuid4(),
                [task_id],
                [product],
            )
            for task_id, product in zip(task_ids, products, strict=True)
        ],
    )


async def _running_again(connection: asyncpg.Connection, job_id: int, due_at: object, project_id: int) -> None:
    # clock_timestamp(): FINISH_JOBS tells a job changed under it by its updated_at.
    await connection.execute(
        "UPDATE jobs SET status = 'running', errors = NULL, finished_at = NULL, updated_at = clock_timestamp()"
        " WHERE id = $1",
        job_id,
    )
    await connection.execute(
        "INSERT INTO running_jobs (job_id, since) VALUES ($1, now()) ON CONFLICT (job_id) DO NOTHING", job_id
    )
    if due_at is not None:  # watched for its due date again while it runs
        await connection.execute(
            "INSERT INTO due_watch (job_id, project_id, due_at) VALUES ($1, $2, $3) ON CONFLICT (job_id) DO NOTHING",
            job_id,
            project_id,
            due_at,
        )
