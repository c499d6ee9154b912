"""The Jobs API: `/public/{projectKey}/...` and the older `/api/v1/{projectKey}/...`.

Both forms behave alike; the older one takes the bare key and answers 501 (its
documented code) where the newer answers 400 for a job that cannot be cancelled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, unquote_to_bytes

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from schemas.api import ErrorBody, JobEnvelope, JobListEnvelope
from schemas.messages import MAX_CALLBACK_URLS, CallbackUrl, Regulation
from worker.api.auth import bare_key_owner, bearer_owner
from worker.api.deps import (
    StateDep,
    api_request_id,
    checked_callback_urls,
    create_job,
    fingerprint,
    later_parts,
    project_id_of,
)
from worker.api.errors import ApiError, not_found
from worker.api.paging import Paging, paging
from worker.api.shapes import epoch_ms, job_view, job_view_with_products
from worker.api.state import json_response
from worker.due_dates import DuePolicy
from worker.store.api_keys import ApiKeyOwner
from worker.store.jobs import CancelRefusedError, NewJob, cancel_job
from worker.store.reads import get_product_status, get_project_job, list_project_jobs

MAX_JOB_ID = 2**63 - 1
MAX_USER_ID = 1024
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415, 422, 501)}


def parse_job_id(text: str) -> int:
    try:
        job_id = int(text)
    except ValueError:
        raise ApiError(400, "jobId must be an integer") from None
    if not 0 < job_id <= MAX_JOB_ID:
        raise not_found("job")
    return job_id


def _as_job_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "after must be a jobId") from None


def parse_epoch_ms(text: str | None, name: str = "startAt") -> datetime | None:
    if text is None or text == "":
        return None
    try:
        millis = int(text)
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise ApiError(400, f"{name} must be a time in epoch milliseconds") from None


def user_id_of(request: Request, project_key: str) -> str:
    """The user id exactly as the client encoded it: from the raw path, so that `%2F` is a
    `/` inside the id (not a path separator) and bytes that are not UTF-8 are refused
    instead of turning into U+FFFD (a job for another id). Found after the project's own
    `/{projectKey}/users/`, wherever the API is mounted (a proxy's prefix included)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.split(b"?", 1)[0]
    marker = f"/{quote(project_key, safe='')}/users/".encode()
    at = path.find(marker)  # the first: the route matched there, and the id may hold the marker
    if at < 0:
        raise ApiError(400, "cannot find the user id in the path")
    encoded = path[at + len(marker) :]
    try:
        user_id = unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "userId is not valid UTF-8 once percent-decoded") from None
    if not user_id or "\x00" in user_id or len(user_id) > MAX_USER_ID:
        raise ApiError(400, f"userId must be 1 to {MAX_USER_ID} characters, without NUL")
    return user_id


def jobs_router(prefix: str, owner_of: Callable[[Request], Awaitable[ApiKeyOwner]], refused_status: int) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=[f"jobs {prefix}"], responses=ERRORS)
    # A default rather than an Annotated alias: a local alias would not resolve under
    # postponed annotations, which FastAPI evaluates in the module's namespace.
    authenticated = Depends(owner_of)

    @router.get("/{projectKey}/jobs", response_model=JobListEnvelope, summary="List the project's jobs")
    async def list_jobs(
        state: StateDep, projectKey: str, page: Annotated[Paging, Depends(paging)], owner: ApiKeyOwner = authenticated
    ) -> Response:
        """All jobs of the project, newest first, including completed and cancelled ones.
        `after` (a jobId) gives the page of jobs older than that one, at any depth."""
        project_id = await project_id_of(state, projectKey, owner)
        after_id = None
        if page.after is not None:
            after_id = _as_job_id(page.after)
        async with state.pool.acquire() as connection:
            rows = await list_project_jobs(connection, project_id, page.request(after_id))
        return json_response({"data": [job_view(row) for row in rows]})

    @router.get("/{projectKey}/jobs/{jobId}", response_model=JobEnvelope, summary="Get a job")
    async def get_job(state: StateDep, projectKey: str, jobId: str, owner: ApiKeyOwner = authenticated) -> Response:
        project_id = await project_id_of(state, projectKey, owner)
        job_id = parse_job_id(jobId)
        async with state.pool.acquire() as connection:
            row = await get_project_job(connection, project_id, job_id)
            if row is None:
                raise not_found("job")
            products = (await get_product_status(connection, [job_id]))[job_id]
        return json_response({"data": job_view_with_products(row, products)})

    @router.delete("/{projectKey}/jobs/{jobId}", response_model=JobEnvelope, summary="Cancel a job")
    async def cancel(state: StateDep, projectKey: str, jobId: str, owner: ApiKeyOwner = authenticated) -> Response:
        """Cancels a job that has not started or is still running."""
        project_id = await project_id_of(state, projectKey, owner)
        job_id = parse_job_id(jobId)
        async with state.pool.acquire() as connection:
            try:
                await cancel_job(connection, job_id, project_id, actor=owner.prefix)
            except CancelRefusedError as refused:
                raise ApiError(refused_status, str(refused), "not_cancellable") from None
            row = await get_project_job(connection, project_id, job_id)
        assert row is not None
        return json_response({"data": job_view(row)})

    @router.delete("/{projectKey}/users/{userId:path}", response_model=JobEnvelope, summary="Delete a user's data")
    async def delete_user(
        request: Request,
        state: StateDep,
        projectKey: str,
        userId: str,
        owner: ApiKeyOwner = authenticated,
        startAt: Annotated[str | None, Query(description="Not before this time (epoch ms).")] = None,
        regulation: Annotated[Regulation | None, Query(description="Sets the due date by its deadline.")] = None,
        dueAt: Annotated[str | None, Query(description="Due by this time (epoch ms).")] = None,
        callbackUrl: Annotated[
            list[CallbackUrl] | None,
            Query(max_length=MAX_CALLBACK_URLS, description="Also send this job's events here (repeatable)."),
        ] = None,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Response:
        """Creates a `delete_user_data` job for the user, committed before the answer. The
        user id may contain any character (percent-encoded; `%2F` for `/`)."""
        project_id = await project_id_of(state, projectKey, owner)
        user_id = user_id_of(request, projectKey)
        start_at = parse_epoch_ms(startAt)
        due_at = parse_epoch_ms(dueAt, "dueAt")
        callback_urls = checked_callback_urls(state, callbackUrl)
        job = NewJob(
            request_id=api_request_id(),
            project_id=project_id,
            identities=[("userId", user_id)],
            reference_id=user_id,
            description=f"Delete user sessions of userId = {user_id}",
            start_at=start_at,
            created_by=owner.prefix,
            regulation=regulation,
            due_at=DuePolicy(state.settings).due_at(regulation, due_at),
            callback_urls=callback_urls,
        )
        job_id = await create_job(
            state,
            job,
            family="jobs",
            key=idempotency_key,
            request_fingerprint=fingerprint(
                "delete_user_data",
                user_id,
                start_at.isoformat() if start_at else None,
                *later_parts(regulation, epoch_ms(due_at), callback_urls),
            ),
        )
        async with state.pool.acquire() as connection:
            job_row = await get_project_job(connection, project_id, job_id)
        assert job_row is not None
        return json_response({"data": job_view(job_row)})

    return router


public_jobs = jobs_router("/public", bearer_owner, refused_status=400)
legacy_jobs = jobs_router("/api/v1", bare_key_owner, refused_status=501)
