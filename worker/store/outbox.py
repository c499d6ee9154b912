"""The task outbox: plans committed by dispatch whose messages the broker has not yet
confirmed (see migrations/0003). Publishing a plan reads its identities back a plan at a
time, so a dispatcher's memory is bounded by the plans it has in flight, not by the
size of the jobs it claimed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from schemas import TaskItem
from schemas.wire import task_item


@dataclass(frozen=True)
class PlanContent:
    items: list[TaskItem]
    dry_run: bool  # dispatch never mixes dry runs with other jobs in one plan


@dataclass(frozen=True)
class OutboxPlan:
    plan_id: uuid.UUID
    task_ids: dict[str, uuid.UUID]  # product → its task id


async def claim_expired(connection: asyncpg.Connection, limit: int, lease_seconds: float) -> list[OutboxPlan]:
    """Plans whose publisher's lease has run out (it died, or is far too slow): taken
    under a new lease. Rows another relay is taking right now are skipped."""
    rows = await connection.fetch(
        """
        UPDATE task_outbox o
        SET claimed_until = clock_timestamp() + make_interval(secs => $2), attempts = o.attempts + 1
        WHERE o.plan_id IN (
            SELECT plan_id FROM task_outbox WHERE claimed_until < clock_timestamp()
            ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING o.plan_id, o.task_ids, o.products
        """,
        limit,
        lease_seconds,
    )
    return [OutboxPlan(row["plan_id"], dict(zip(row["products"], row["task_ids"], strict=True))) for row in rows]


# A chunk sent again after some of its identities failed (`failures_listed`) carries only
# those (worker.store.retry_failed); the OR stops before its subquery for every other chunk.
PLAN_ROWS = """
SELECT c.job_id, j.project_id, j.dataset_id, coalesce(j.dry_run, false) AS dry_run, ji.namespace, ji.value
FROM task_chunks c
JOIN jobs j ON j.id = c.job_id
JOIN job_identities ji ON ji.job_id = c.job_id AND ji.seq >= c.seq_from AND ji.seq < c.seq_to
WHERE c.task_id = $1 AND c.product = $2
  AND (c.failures_listed IS NOT TRUE
       OR EXISTS (SELECT 1 FROM identity_failures f
                  WHERE f.job_id = c.job_id AND f.product = c.product AND f.seq = ji.seq))
ORDER BY c.job_id, c.chunk_no, ji.seq
"""


async def plan_items(connection: asyncpg.Connection, plan: OutboxPlan) -> PlanContent:
    """The task items of a plan (the same for every product), read through one of its tasks."""
    product, task_id = next(iter(plan.task_ids.items()))
    rows = await connection.fetch(
        PLAN_ROWS,
        task_id,
        product,
    )
    items: list[TaskItem] = []
    start = 0
    for index in range(1, len(rows) + 1):
        if index == len(rows) or rows[index]["job_id"] != rows[start]["job_id"]:
            first = rows[start]
            identities = [(row["namespace"], row["value"]) for row in rows[start:index]]
            items.append(task_item(first["job_id"], first["project_id"], first["dataset_id"], identities))
            start = index
    return PlanContent(items, any(row["dry_run"] for row in rows[:1]))


async def published(connection: asyncpg.Connection, plan_ids: list[uuid.UUID]) -> None:
    await connection.execute("DELETE FROM task_outbox WHERE plan_id = ANY($1::uuid[])", plan_ids)


async def pending_count(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM task_outbox")
    return count
