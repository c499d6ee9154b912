"""Dispatch: claim due jobs, split them into chunks and product tasks, record them.

One transaction claims the jobs, writes their chunks (task_chunks) and one task_outbox
row per plan, and marks them running; the tasks are published only after it commits
(worker.roles.relay). So every chunk an acknowledgement can name exists before the task
that carries it is on the broker, and a crash after the commit leaves the outbox row for
a relay to publish. A crash before it leaves the jobs `scheduled`, queued as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg

from schemas.wire import ENCODED_BYTES_PER_CHAR, ITEM_FRAMING_BYTES
from worker.store.acks import finish_jobs


@dataclass(frozen=True)
class DueJob:
    job_id: int
    project_id: int
    dataset_id: str
    identity_count: int
    chunk_size: int
    identity_max_bytes: int | None  # None: created before sizes were recorded
    products: tuple[str, ...]  # the products it was created for that still wait for it
    dry_run: bool = False


class Chunk(NamedTuple):
    """A tuple: dispatch makes one per job and product round, and tuples are the cheapest
    immutable record to create."""

    job_id: int
    chunk_no: int
    seq_from: int
    seq_to: int  # exclusive

    @property
    def size(self) -> int:
        return self.seq_to - self.seq_from


@dataclass(eq=False)  # compared and hashed by identity: the same plan is sent to every product
class TaskPlan:
    """Chunks that travel together, one task message per product."""

    products: tuple[str, ...] = ()
    chunks: list[Chunk] = field(default_factory=list)
    identity_count: int = 0
    bytes_bound: int = 0
    plan_id: uuid.UUID = field(default_factory=uuid.uuid4)
    task_ids: dict[str, uuid.UUID] = field(default_factory=dict)


def split_into_chunks(job: DueJob) -> list[Chunk]:
    """The job's chunks, by the chunk size fixed when it was created."""
    size = job.chunk_size
    return [
        Chunk(job.job_id, chunk_no, start, min(start + size, job.identity_count))
        for chunk_no, start in enumerate(range(0, job.identity_count, size))
    ]


def plan_tasks(
    jobs: Sequence[DueJob], products: tuple[str, ...], max_identities: int, max_items: int, max_bytes: int
) -> list[TaskPlan]:
    """Pack chunks into tasks: at most `max_identities` identities, `max_items` chunks and
    (by each job's bound) `max_bytes` each, so that many small requests share one message
    and a large one spreads over several. A chunk over a limit travels alone."""
    plans: list[TaskPlan] = []
    current = TaskPlan(products)
    for job in jobs:
        per_identity = job.identity_max_bytes if job.identity_max_bytes is not None else max_bytes
        for chunk in split_into_chunks(job):
            size = chunk.size * per_identity + ITEM_FRAMING_BYTES + ENCODED_BYTES_PER_CHAR * len(job.dataset_id)
            full = (
                current.identity_count + chunk.size > max_identities
                or len(current.chunks) >= max_items
                or current.bytes_bound + size > max_bytes
            )
            if current.chunks and full:
                plans.append(current)
                current = TaskPlan(products)
            current.chunks.append(chunk)
            current.identity_count += chunk.size
            current.bytes_bound += size
    if current.chunks:
        plans.append(current)
    for plan in plans:
        plan.task_ids = {product: uuid.uuid4() for product in products}
    return plans


CLAIM_DUE_JOBS = """
WITH due AS (
    SELECT due_at, job_id FROM dispatch_queue
    WHERE due_at <= now()
    ORDER BY due_at, job_id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), sizes AS MATERIALIZED (
    -- Each due job's size looked up by key (once: materialized): joined, the planner hashed
    -- the whole jobs table for a burst's few thousand due rows, a sequential scan per round.
    SELECT due.due_at, due.job_id, coalesce((SELECT j.identity_count FROM jobs j WHERE j.id = due.job_id), 0) AS n
    FROM due
), sized AS (
    SELECT due_at, job_id, n, sum(n) OVER (ORDER BY due_at, job_id) AS running_total FROM sizes
), taken AS (
    DELETE FROM dispatch_queue q USING sized s
    WHERE q.due_at = s.due_at AND q.job_id = s.job_id AND s.running_total - s.n < $2
    RETURNING q.job_id
)
SELECT j.id, j.project_id, j.dataset_id, j.identity_count, j.chunk_size, j.identity_max_bytes,
       coalesce(j.dry_run, false) AS dry_run,
       ARRAY(SELECT ps.product FROM product_status ps
             WHERE ps.job_id = j.id AND ps.status = 'waiting' ORDER BY ps.product) AS products
FROM jobs j
-- The taken jobs by primary key, whatever the statistics say about `status`: joined, the
-- planner trusted an ANALYZE taken when no job was scheduled (the end of a burst), put a
-- sequential scan of jobs filtered on status = 'scheduled' (estimated: 1 row) outside a
-- rescan of `taken`, and with 17,000 jobs scheduled a dispatch round took 2-10 s: no job
-- completed for 19 s at a time in the bench (auto_explain), until autoanalyze came by.
WHERE j.id = ANY(ARRAY(SELECT job_id FROM taken)) AND j.status = 'scheduled'
ORDER BY j.id
FOR UPDATE OF j
"""


async def claim_due_jobs(connection: asyncpg.Connection, max_jobs: int, max_identities: int) -> list[DueJob]:
    """Take due jobs off the dispatch queue, oldest due first, and lock them: at most
    `max_jobs`, and no more identities than `max_identities` (but always the first job).

    Queue rows another dispatcher holds are skipped. The rows are deleted in the caller's
    transaction: if it does not commit, they are back. A job cancelled (or deleted) while
    queued is dropped here; the row lock waits for a cancel in progress and sees its outcome."""
    rows = await connection.fetch(CLAIM_DUE_JOBS, max_jobs, max_identities)
    return [
        DueJob(
            row["id"],
            row["project_id"],
            row["dataset_id"],
            row["identity_count"],
            row["chunk_size"],
            row["identity_max_bytes"],
            tuple(row["products"]),
            row["dry_run"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class DispatchRound:
    jobs: list[DueJob]
    plans: list[TaskPlan]
    skipped: dict[int, tuple[str, ...]]  # job id → products it names that are not configured here
    ended_at_once: list[int]  # jobs with nothing to send: ended in the same transaction


def plan_round(
    jobs: Sequence[DueJob], configured: Sequence[str], max_identities: int, max_items: int, max_bytes: int
) -> DispatchRound:
    """Plans for every group of jobs that wait for the same products; the products a job
    names that this deployment no longer has are skipped, visibly.

    A dry run never shares a task with another job: its task says `dryRun` for all its
    items, and a product's count (rows a statement found) is then the job's own."""
    known = set(configured)
    groups: dict[tuple[tuple[str, ...], bool], list[DueJob]] = {}
    skipped: dict[int, tuple[str, ...]] = {}
    for job in jobs:
        sendable = tuple(p for p in job.products if p in known)
        missing = tuple(p for p in job.products if p not in known)
        if missing:
            skipped[job.job_id] = missing
        if sendable:
            groups.setdefault((sendable, job.dry_run), []).append(job)
    plans = [
        plan
        for (products, dry_run), members in groups.items()
        for plan in plan_tasks(members, products, max_identities, 1 if dry_run else max_items, max_bytes)
    ]
    with_tasks = {chunk.job_id for plan in plans for chunk in plan.chunks}
    return DispatchRound(list(jobs), plans, skipped, [job.job_id for job in jobs if job.job_id not in with_tasks])


async def record_dispatch(connection: asyncpg.Connection, round_: DispatchRound, lease_seconds: float) -> list[int]:
    """Write the chunks and the outbox rows, mark the jobs running; end at once those with
    nothing to send (no products, or only products no longer configured). Returns the
    ids of jobs ended here. Runs in the caller's transaction."""
    await connection.copy_records_to_table(
        "task_chunks",
        records=[
            (chunk.job_id, product, chunk.chunk_no, task_id, chunk.seq_from, chunk.seq_to)
            for plan in round_.plans
            for product, task_id in plan.task_ids.items()
            for chunk in plan.chunks
        ],
        columns=["job_id", "product", "chunk_no", "task_id", "seq_from", "seq_to"],
    )
    if round_.plans:
        await connection.executemany(
            "INSERT INTO task_outbox (plan_id, task_ids, products, claimed_until)"
            " VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))",
            [(plan.plan_id, list(plan.task_ids.values()), list(plan.task_ids), lease_seconds) for plan in round_.plans],
        )
    if round_.skipped:
        pairs = [(job_id, product) for job_id, products in round_.skipped.items() for product in products]
        await connection.execute(
            "UPDATE product_status ps SET status = 'skipped', created_at = now(),"
            " error = 'skipped: no longer in the products file where the job was dispatched'"
            " FROM unnest($1::bigint[], $2::text[]) AS s(job_id, product)"
            " WHERE ps.job_id = s.job_id AND ps.product = s.product AND ps.status = 'waiting'",
            [job_id for job_id, _ in pairs],
            [product for _, product in pairs],
        )
    await connection.execute(
        "WITH dispatched AS (UPDATE jobs SET status = 'running', dispatched_at = now(), updated_at = now()"
        " WHERE id = ANY($1::bigint[]) RETURNING id, dispatched_at)"
        " INSERT INTO running_jobs (job_id, since) SELECT id, dispatched_at FROM dispatched",
        [job.job_id for job in round_.jobs],
    )
    completed, failed = await finish_jobs(connection, round_.ended_at_once)
    return completed + failed
