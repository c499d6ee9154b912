"""Acks role: acknowledgements from `deletion.acks` settle chunks and roll up into
product and job status, two statements per batch (worker.store.acks)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import structlog

from schemas import AckResult, ProductAck
from schemas.status import JobStatus
from worker import metrics
from worker.amqp import Delivery, QueueNames
from worker.roles.batch import DONE, BatchConsumer, DeadLetter, Disposition, Probe, parse_body
from worker.roles.consuming import ConsumerOptions
from worker.store.acks import ChunkResult, apply_acks

log = structlog.get_logger(__name__)


def parse_ack(body: bytes) -> ProductAck | DeadLetter:
    ack = parse_body(ProductAck, body)
    if isinstance(ack, DeadLetter):
        return ack
    try:
        uuid.UUID(ack.task_id)
    except ValueError:
        return DeadLetter("schema: taskId: not a task id issued by dispatch")
    return ack


ERROR_MAX_CHARS = 500


def chunk_result(task_id: uuid.UUID, product: str, result: AckResult) -> ChunkResult:
    """What an acknowledgement's result settles: its status, its counts when the product
    gave them, and in a failed result the identities that failed when not all did."""
    failed = result["status"] == "failed"
    failures = tuple(
        (f["namespace"]["code"], f["id"], (f.get("error") or "failed")[:ERROR_MAX_CHARS])
        for f in (result.get("failedIdentities") or () if failed else ())
    )
    return ChunkResult(
        task_id,
        result["jobId"],
        product,
        result["status"],
        (result.get("error") or "failed")[:ERROR_MAX_CHARS] if failed else None,
        deleted=result.get("deleted"),
        not_found=result.get("notFound"),
        failures=failures,
    )


class AcksRole(BatchConsumer):
    def __init__(self, queue: QueueNames, options: ConsumerOptions, *, pool: asyncpg.Pool, probe: Probe) -> None:
        super().__init__("acks", queue, options, probe)
        self.pool = pool

    async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
        dispositions: list[Disposition] = [DONE] * len(batch)
        results: list[ChunkResult] = []
        for index, message in enumerate(batch):
            parsed = parse_ack(message.body)
            if isinstance(parsed, DeadLetter):
                dispositions[index] = parsed
                continue
            task_id = uuid.UUID(parsed.task_id)
            # `cancelled` results need no write: cancelling already settled those chunks.
            results.extend(
                chunk_result(task_id, parsed.product, r) for r in parsed.results if r["status"] != "cancelled"
            )
        if not results:
            return dispositions
        async with self.pool.acquire() as connection:
            outcome = await apply_acks(connection, results)
        if outcome.completed:
            metrics.JOB_TRANSITIONS.labels(JobStatus.COMPLETED).inc(len(outcome.completed))
        if outcome.failed:
            metrics.JOB_TRANSITIONS.labels(JobStatus.FAILED).inc(len(outcome.failed))
        log.info(
            "acks_applied",
            settled=outcome.settled,
            stale=outcome.stale,
            completed=len(outcome.completed),
            failed=len(outcome.failed),
            completed_ids=outcome.completed[:50],
            failed_ids=outcome.failed[:50],
        )
        return dispositions
