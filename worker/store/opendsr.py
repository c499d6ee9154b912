"""OpenDSR requests (migrations/0010): their job, their idempotency, their callbacks.

A request is written in its job's transaction, its row first: a concurrent request with
the same `subject_request_id` in the same project waits on that row, then finds the job
(or, if it was another request under the same id, is refused). The notify role reads
`callback_targets` to learn which jobs are OpenDSR requests and where their status
callbacks go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from schemas.status import JobStatus
from worker.db import retry_contention
from worker.errors import ConflictError
from worker.store.jobs import CancelRefusedError, JobSizing, NewJob, cancel_job, create_jobs


class SubjectRequestIdReusedError(ConflictError):
    def __init__(self) -> None:
        super().__init__(
            "this subject_request_id was already used for a different request in this project;"
            " use a new id for a new request"
        )


@dataclass(frozen=True)
class NewOpenDsrRequest:
    subject_request_id: UUID
    fingerprint: bytes
    regulation: str
    api_version: str | None
    submitted_time: datetime
    status_callback_urls: tuple[str, ...]


@dataclass(frozen=True)
class OpenDsrRequestRow:
    """A request with what its job says of it now."""

    project_id: int
    project_key: str
    controller_id: str  # the project's organization
    subject_request_id: UUID
    job_id: int
    job_status: JobStatus
    regulation: str
    api_version: str | None
    submitted_time: datetime
    received_time: datetime
    # The job's due date (every OpenDSR job has one: a regulation is required).
    expected_completion_time: datetime
    status_callback_urls: tuple[str, ...]


# The job events that change an OpenDSR request's status (worker.opendsr.protocol).
CALLBACK_EVENT_TYPES = ("job.scheduled", "job.running", "job.completed", "job.failed", "job.cancelled")

# For the relay's fan-out of events into webhook deliveries (worker.store.webhooks): one
# target per status-changing event of an OpenDSR request's job and per status callback
# URL, in the columns of that statement's callback-URL branch (`events` is its CTE of
# the relayed events: event, event_id, type, job_id). A UNION ALL branch of its own.
FAN_OUT_TARGETS = f"""
SELECT ev.event, ev.event_id, NULL::uuid AS subscription_id, o.project_id, u.url
FROM events ev
JOIN opendsr_requests o ON o.job_id = ev.job_id
CROSS JOIN LATERAL unnest(o.status_callback_urls) AS u(url)
WHERE ev.type IN ({", ".join(f"'{t}'" for t in CALLBACK_EVENT_TYPES)})
"""  # noqa: S608 - constant text

SELECT_REQUESTS = """
SELECT o.project_id, p.key AS project_key, p.org_id AS controller_id, o.subject_request_id, o.job_id,
       j.status AS job_status, o.regulation, o.api_version, o.submitted_time, o.received_time,
       coalesce(j.due_at, o.received_time) AS expected_completion_time, o.status_callback_urls
FROM opendsr_requests o
JOIN projects p ON p.id = o.project_id
JOIN jobs j ON j.id = o.job_id
"""


def _row(record: asyncpg.Record) -> OpenDsrRequestRow:
    return OpenDsrRequestRow(
        **{
            **dict(record),
            "job_status": JobStatus(record["job_status"]),
            "status_callback_urls": tuple(record["status_callback_urls"]),
        }
    )


async def create_request(
    connection: asyncpg.Connection,
    request: NewOpenDsrRequest,
    job: NewJob,
    *,
    products: list[str],
    notify_channel: str,
    sizing: JobSizing,
) -> int:
    """Create the request and its job, or find the job of the same request made before;
    returns the job id. SubjectRequestIdReusedError for the id of another request."""
    async with connection.transaction():
        claimed = await connection.fetchval(
            "INSERT INTO opendsr_requests (project_id, subject_request_id, fingerprint, regulation, api_version,"
            " submitted_time, status_callback_urls) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT DO NOTHING RETURNING true",
            job.project_id,
            request.subject_request_id,
            request.fingerprint,
            request.regulation,
            request.api_version,
            request.submitted_time,
            list(request.status_callback_urls),
        )
        if not claimed:
            row = await connection.fetchrow(
                "SELECT fingerprint, job_id FROM opendsr_requests WHERE project_id = $1 AND subject_request_id = $2",
                job.project_id,
                request.subject_request_id,
            )
            assert row is not None
            assert row["job_id"] is not None
            if row["fingerprint"] != request.fingerprint:
                raise SubjectRequestIdReusedError
            existing: int = row["job_id"]
            return existing
        created = await create_jobs(connection, [job], products, notify_channel, sizing)
        if job.key not in created:
            # A request published to the queue under this request id: not ours to take over.
            raise SubjectRequestIdReusedError
        job_id = created[job.key]
        await connection.execute(
            "UPDATE opendsr_requests SET job_id = $3 WHERE project_id = $1 AND subject_request_id = $2",
            job.project_id,
            request.subject_request_id,
            job_id,
        )
        return job_id


async def find_requests(
    connection: asyncpg.Connection, org_id: str, subject_request_id: UUID, project_key: str | None = None
) -> list[OpenDsrRequestRow]:
    """The organization's requests with this id (in this project, when given): one,
    none, or (an id reused across projects) several."""
    records = await connection.fetch(
        SELECT_REQUESTS + " WHERE o.subject_request_id = $1 AND p.org_id = $2 AND ($3::text IS NULL OR p.key = $3)"
        " ORDER BY o.project_id LIMIT 10",
        subject_request_id,
        org_id,
        project_key,
    )
    return [_row(record) for record in records]


async def cancel_pending(connection: asyncpg.Connection, job_id: int, actor: str | None = None) -> bool:
    """Cancel the request's job if it is still scheduled (the spec's `pending`); False if
    it was cancelled already. CancelRefusedError once it is running or has ended."""

    async def attempt() -> bool:
        async with connection.transaction():
            # Locked first, as cancel_job locks it: dispatch cannot start the job between
            # this check and the cancellation.
            status = await connection.fetchval("SELECT status FROM jobs WHERE id = $1 FOR UPDATE", job_id)
            if status == JobStatus.CANCELLED:
                return False
            if status != JobStatus.SCHEDULED:
                raise CancelRefusedError(job_id, str(status))
            await cancel_job(connection, job_id, actor=actor)
            return True

    return await retry_contention(attempt)


async def callback_targets(connection: asyncpg.Connection, job_ids: list[int]) -> dict[int, OpenDsrRequestRow]:
    """{job id: its request} for those of these jobs that are OpenDSR requests with
    status callback URLs (the rest are left out)."""
    if not job_ids:
        return {}
    records = await connection.fetch(
        SELECT_REQUESTS + " WHERE o.job_id = ANY($1::bigint[]) AND cardinality(o.status_callback_urls) > 0",
        job_ids,
    )
    return {record["job_id"]: _row(record) for record in records}
