"""The Jobs API: `/public/{projectKey}/...` and the older `/api/v1/{projectKey}/...`.

Both forms behave alike; the older one takes the bare key and answers 501 (its
documented code) where the newer answers 400 for a job that cannot be cancelled.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from schemas.api import ErrorBody, JobEnvelope, JobListEnvelope
from worker.amqp import Topology
from worker.api.auth import bare_key_owner, bearer_owner
from worker.api.errors import ApiError, not_found
from worker.api.paging import Paging, paging
from worker.api.shapes import job_view
from worker.api.state import ApiState, json_response
from worker.store.api_keys import ApiKeyOwner
from worker.store.jobs import CancelRefusedError, JobNotFoundError, JobSizing, NewJob, cancel_job, create_jobs
from worker.store.reads import get_project_job, list_project_jobs, project_id_in_org

MAX_JOB_ID = 2**63 - 1
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415, 501)}


def parse_job_id(text: str) -> int:
    try:
        job_id = int(text)
    except ValueError:
        raise ApiError(400, "jobId must be an integer") from None
    if not 0 < job_id <= MAX_JOB_ID:
        raise not_found("job")
    return job_id


def parse_start_at(text: str | None) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        millis = int(text)
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise ApiError(400, "startAt must be a time in epoch milliseconds") from None


async def project_of(request: Request, project_key: str, owner: ApiKeyOwner) -> int:
    state: ApiState = request.app.state.api
    cached = state.projects.get((project_key, owner.org_id))
    if cached is not None:
        return cached
    async with state.pool.acquire() as connection:
        project_id = await project_id_in_org(connection, project_key, owner.org_id)
    if project_id is None:
        raise not_found("project")
    state.projects[(project_key, owner.org_id)] = project_id  # projects never move
    return project_id


def jobs_router(prefix: str, owner_of: Callable[[Request], Awaitable[ApiKeyOwner]], refused_status: int) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=[f"jobs {prefix}"], responses=ERRORS)
    # A default rather than an Annotated alias: a local alias would not resolve under
    # postponed annotations, which FastAPI evaluates in the module's namespace.
    authenticated = Depends(owner_of)

    @router.get("/{projectKey}/jobs", response_model=JobListEnvelope, summary="List the project's jobs")
    async def list_jobs(
        request: Request,
        projectKey: str,
        page: Annotated[Paging, Depends(paging)],
        owner: ApiKeyOwner = authenticated,
    ) -> Response:
        """All jobs of the project, newest first, including completed and cancelled ones."""
        project_id = await project_of(request, projectKey, owner)
        state: ApiState = request.app.state.api
        async with state.pool.acquire() as connection:
            rows = await list_project_jobs(connection, project_id, page.limit, page.offset)
        return json_response({"data": [job_view(row) for row in rows]})

    @router.get("/{projectKey}/jobs/{jobId}", response_model=JobEnvelope, summary="Get a job")
    async def get_job(request: Request, projectKey: str, jobId: str, owner: ApiKeyOwner = authenticated) -> Response:
        project_id = await project_of(request, projectKey, owner)
        job_id = parse_job_id(jobId)
        state: ApiState = request.app.state.api
        async with state.pool.acquire() as connection:
            row = await get_project_job(connection, project_id, job_id)
        if row is None:
            raise not_found("job")
        return json_response({"data": job_view(row)})

    @router.delete("/{projectKey}/jobs/{jobId}", response_model=JobEnvelope, summary="Cancel a job")
    async def cancel(request: Request, projectKey: str, jobId: str, owner: ApiKeyOwner = authenticated) -> Response:
        """Cancels a job that has not started or is still running."""
        project_id = await project_of(request, projectKey, owner)
        job_id = parse_job_id(jobId)
        state: ApiState = request.app.state.api
        async with state.pool.acquire() as connection:
            try:
                await cancel_job(connection, job_id, project_id)
            except JobNotFoundError:
                raise not_found("job") from None
            except CancelRefusedError as refused:
                raise ApiError(refused_status, str(refused), "not_cancellable") from None
            row = await get_project_job(connection, project_id, job_id)
        assert row is not None
        return json_response({"data": job_view(row)})

    @router.delete("/{projectKey}/users/{userId}", response_model=JobEnvelope, summary="Delete a user's data")
    async def delete_user(
        request: Request,
        projectKey: str,
        userId: str,
        owner: ApiKeyOwner = authenticated,
        startAt: Annotated[str | None, Query(description="Not before this time (epoch ms).")] = None,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Response:
        """Creates a `delete_user_data` job for the user, committed before the answer."""
        project_id = await project_of(request, projectKey, owner)
        if not userId or "\x00" in userId or len(userId) > 1024:
            raise ApiError(400, "userId must be 1 to 1024 characters")
        start_at = parse_start_at(startAt)
        state: ApiState = request.app.state.api
        request_id = f"api:{project_id}:{idempotency_key}" if idempotency_key else f"api:{uuid.uuid4()}"
        job = NewJob(
            request_id=request_id,
            project_id=project_id,
            identities=[("userId", userId)],
            reference_id=userId,
            description=f"Delete user sessions of userId = {userId}",
            start_at=start_at,
            created_by=owner.prefix,
        )
        async with state.pool.acquire() as connection:
            await create_or_find(connection, state, job)
            row = await connection.fetchrow("SELECT id FROM jobs WHERE request_id = $1", request_id)
            assert row is not None
            job_row = await get_project_job(connection, project_id, row["id"])
        assert job_row is not None
        return json_response({"data": job_view(job_row)})

    return router


async def create_or_find(connection: asyncpg.Connection, state: ApiState, job: NewJob) -> None:
    """Create the job unless its request id exists (a retried idempotent call)."""
    settings = state.settings
    await create_jobs(
        connection,
        [job],
        state.products.names,
        Topology.for_settings(settings, state.products.names).due_channel,
        JobSizing(settings.chunk_size, settings.task_max_bytes),
    )


public_jobs = jobs_router("/public", bearer_owner, refused_status=400)
legacy_jobs = jobs_router("/api/v1", bare_key_owner, refused_status=501)
