"""Retry only what failed: `POST /workorder/{id}/retry` and
`POST /public/{projectKey}/jobs/{jobId}/retry` send a job's failed chunks again.

Only the chunks that failed (of the named products, or of every product) go out again,
and of a chunk whose failed identities a product named, only those identities. The job is
`running` again at once and ends `completed` or `failed` as the new acknowledgements come
in (worker.store.retry_failed).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import Response

from schemas.api import ErrorBody, RetryRequest, RetryResult
from worker.amqp import Topology
from worker.api.deps import Owner, StateDep, project_id_of
from worker.api.errors import ApiError, not_found
from worker.api.routes_identities import product_key
from worker.api.routes_jobs import parse_job_id
from worker.api.state import ApiState, json_response
from worker.store.jobs import JobNotFoundError
from worker.store.reads import get_org_workorder
from worker.store.retry_failed import RetryRefusedError, retry_failed

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 409)}
router = APIRouter(tags=["retries"], responses=ERRORS)
RetryBody = Annotated[RetryRequest | None, Body(description="Which products (default: every product).")]


async def _retry(state: ApiState, job_id: int, body: RetryRequest | None, project_id: int | None) -> Response:
    names = state.products.names
    products = [key for name in body.products if (key := product_key(state, name))] if body and body.products else None
    async with state.pool.acquire() as connection:
        try:
            outcome = await retry_failed(
                connection,
                job_id,
                products,
                names,
                project_id=project_id,
                notify_channel=Topology.for_settings(state.settings, names).due_channel,
            )
        except JobNotFoundError:
            raise not_found("job") from None
        except RetryRefusedError as refused:
            raise ApiError(409, str(refused), "not_retryable") from None
    return json_response(outcome.as_dict())


@router.post("/workorder/{workorderId}/retry", response_model=RetryResult, summary="Send what failed again")
async def retry_workorder(state: StateDep, workorderId: str, owner: Owner, body: RetryBody = None) -> Response:
    """The failed chunks (and, where products named them, only the failed identities) of a
    running or failed work order go to their products again. 409 when nothing failed, the
    work order is completed or cancelled, or its identities were hashed by retention."""
    async with state.pool.acquire() as connection:
        row = await get_org_workorder(connection, owner.org_id, workorderId)
    if row is None:
        raise not_found("work order")
    return await _retry(state, row["id"], body, None)


@router.post("/public/{projectKey}/jobs/{jobId}/retry", response_model=RetryResult, summary="Send what failed again")
async def retry_job(state: StateDep, projectKey: str, jobId: str, owner: Owner, body: RetryBody = None) -> Response:
    """As for a work order; the job must belong to the project."""
    project_id = await project_id_of(state, projectKey, owner)
    return await _retry(state, parse_job_id(jobId), body, project_id)
