"""Dispatch: claim due jobs, split them into chunks and product tasks, record the chunks.

The caller publishes the tasks inside the same transaction and commits only after the
broker confirmed them. A crash before the commit leaves the jobs `scheduled`, to be
dispatched again under new task ids; acknowledgements of the lost attempt match no
chunk and change nothing. So a job enters a product's status exactly once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg


@dataclass(frozen=True)
class DueJob:
    job_id: int
    project_id: int
    dataset_id: str
    identity_count: int
    chunk_size: int


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
    """Chunks that travel together in one task message (one per product)."""

    chunks: list[Chunk] = field(default_factory=list)
    identity_count: int = 0


@dataclass(frozen=True)
class ProductTaskRecord:
    task_id: uuid.UUID
    product: str
    plan: TaskPlan


def split_into_chunks(job: DueJob) -> list[Chunk]:
    """The job's chunks, by the chunk size fixed when it was created."""
    size = job.chunk_size
    return [
        Chunk(job.job_id, chunk_no, start, min(start + size, job.identity_count))
        for chunk_no, start in enumerate(range(0, job.identity_count, size))
    ]


def plan_tasks(jobs: list[DueJob], max_identities: int, max_items: int) -> list[TaskPlan]:
    """Pack chunks into tasks: at most `max_identities` identities (a larger chunk travels
    alone) and `max_items` chunks each, so that many small requests share one message and
    a large one spreads over several."""
    plans: list[TaskPlan] = []
    current = TaskPlan()
    for job in jobs:
        for chunk in split_into_chunks(job):
            full = current.identity_count + chunk.size > max_identities or len(current.chunks) >= max_items
            if current.chunks and full:
                plans.append(current)
                current = TaskPlan()
            current.chunks.append(chunk)
            current.identity_count += chunk.size
    if current.chunks:
        plans.append(current)
    return plans


async def claim_due_jobs(connection: asyncpg.Connection, limit: int) -> list[DueJob]:
    """Take up to `limit` due jobs off the dispatch queue, oldest due first, and lock them.

    Queue rows another dispatcher holds are skipped. The rows are deleted in the caller's
    transaction: if it does not commit, they are back. A job cancelled while queued is
    dropped here (its row is taken, the job is not returned); the row lock waits for a
    cancel in progress and then sees its outcome."""
    rows = await connection.fetch(
        """
        WITH due AS (
            SELECT due_at, job_id FROM dispatch_queue
            WHERE due_at <= now()
            ORDER BY due_at, job_id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), taken AS (
            DELETE FROM dispatch_queue q USING due
            WHERE q.due_at = due.due_at AND q.job_id = due.job_id
            RETURNING q.job_id
        )
        SELECT j.id, j.project_id, j.dataset_id, j.identity_count, j.chunk_size
        FROM jobs j JOIN taken t ON t.job_id = j.id
        WHERE j.status = 'scheduled'
        ORDER BY j.id
        FOR UPDATE OF j
        """,
        limit,
    )
    return [
        DueJob(row["id"], row["project_id"], row["dataset_id"], row["identity_count"], row["chunk_size"])
        for row in rows
    ]


async def load_identities(connection: asyncpg.Connection, job_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    rows = await connection.fetch(
        "SELECT job_id, namespace, value FROM job_identities WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, seq",
        job_ids,
    )
    identities: dict[int, list[tuple[str, str]]] = {job_id: [] for job_id in job_ids}
    for row in rows:
        identities[row["job_id"]].append((row["namespace"], row["value"]))
    return identities


def product_tasks(plans: list[TaskPlan], products: list[str]) -> list[ProductTaskRecord]:
    """The same packing for every product, each task under its own id."""
    return [ProductTaskRecord(uuid.uuid4(), product, plan) for product in products for plan in plans]


async def record_dispatch(connection: asyncpg.Connection, jobs: list[DueJob], tasks: list[ProductTaskRecord]) -> None:
    """Write the chunks and mark the jobs running (or completed at once when no product
    is configured). Each product already expects its chunk count (set at creation)."""
    await connection.copy_records_to_table(
        "task_chunks",
        records=[
            (chunk.job_id, task.product, chunk.chunk_no, task.task_id, chunk.seq_from, chunk.seq_to)
            for task in tasks
            for chunk in task.plan.chunks
        ],
        columns=["job_id", "product", "chunk_no", "task_id", "seq_from", "seq_to"],
    )
    new_status = "running" if tasks else "completed"
    await connection.execute(
        "WITH dispatched AS (UPDATE jobs SET status = $2, dispatched_at = now(), updated_at = now(),"
        " finished_at = CASE WHEN $2 = 'completed' THEN now() END"
        " WHERE id = ANY($1::bigint[]) RETURNING id, finished_at)"
        " INSERT INTO retention_queue (finished_at, job_id)"
        " SELECT finished_at, id FROM dispatched WHERE finished_at IS NOT NULL",
        [job.job_id for job in jobs],
        new_status,
    )
