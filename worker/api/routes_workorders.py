"""The work-order API (`/workorder`): bulk identity deletion with per-product status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import Response

from schemas.api import ErrorBody, WorkOrder, WorkOrderCreate, WorkOrderList, WorkOrderUpdate
from worker.api.deps import (
    Owner,
    StateDep,
    api_request_id,
    checked_callback_urls,
    create_job,
    fingerprint,
    later_parts,
    project_id_of,
)
from worker.api.errors import ApiError, not_found
from worker.api.json_body import budgeted_json_body, json_body_openapi, validate_json_body
from worker.api.paging import Paging, paging
from worker.api.shapes import workorder_view
from worker.api.state import ApiState, json_response
from worker.due_dates import DuePolicy
from worker.gc_pause import gc_paused
from worker.store.jobs import NewJob, update_workorder_text
from worker.store.reads import get_job, get_org_workorder, get_product_status, list_org_workorders, workorder_job_id

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415, 422, 503)}
router = APIRouter(prefix="/workorder", tags=["work orders"], responses=ERRORS)
# Bodies the routes here read themselves (json_body): documented by the app, not by FastAPI.
SELF_PARSED_BODIES = (WorkOrderCreate,)


def workorder_job(
    state: ApiState, order: WorkOrderCreate, identities: list[tuple[str, str]], project_id: int, created_by: str
) -> NewJob:
    """The job a work order becomes, whoever took it (this API, the console's form): one
    place, so that a field added to work orders reaches both."""
    return NewJob(
        request_id=api_request_id(),
        project_id=project_id,
        identities=identities,
        action="delete_identity",
        dataset_id=order.datasetId,
        display_name=order.displayName,
        description=order.description,
        created_by=created_by,
        regulation=order.regulation,
        due_at=DuePolicy(state.settings).due_at(order.regulation, order.dueAt),
        callback_urls=checked_callback_urls(state, order.callbackUrls),
        dry_run=order.dryRun,
    )


async def _full_view(state: ApiState, row: dict[str, Any], org_id: str) -> dict[str, Any]:
    async with state.pool.acquire() as connection:
        products = (await get_product_status(connection, [row["id"]]))[row["id"]]
    return workorder_view(row, org_id, products, state.products.display_names())


@router.post(
    "",
    response_model=WorkOrder,
    summary="Create a record-delete request",
    openapi_extra=json_body_openapi(WorkOrderCreate, "Up to 100,000 identities."),
)
async def create_workorder(
    request: Request,
    state: StateDep,
    owner: Owner,
    x_sandbox_name: Annotated[str | None, Header(description="The projectKey of the project.")] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Deletes identities from one dataset or all (`datasetId: ALL`). Committed before the answer."""
    async with budgeted_json_body(state, request) as body:
        order = validate_json_body(body, WorkOrderCreate)
        if not x_sandbox_name:
            raise ApiError(400, "name the project in the x-sandbox-name header (its projectKey)")
        project_id = await project_id_of(state, x_sandbox_name, owner)
        with gc_paused():  # 100,000 new tuples (see worker.gc_pause)
            identities = [(identity["namespace"]["code"], identity["id"]) for identity in order.identities]
        job = workorder_job(state, order, identities, project_id, owner.prefix)
        key_fingerprint = fingerprint(
            order.datasetId,
            order.displayName,
            order.description,
            identities,
            *later_parts(
                order.regulation, job.due_at.isoformat() if order.dueAt and job.due_at else None, job.callback_urls
            ),
            # Only when set: an ordinary request's fingerprint stays what earlier releases stored.
            *(("dryRun",) if order.dryRun else ()),
        )
        del body, order, identities  # the budget covers the copy into Postgres; nothing past it
        job_id = await create_job(
            state, job, family="workorder", key=idempotency_key, request_fingerprint=key_fingerprint
        )
    async with state.pool.acquire() as connection:
        row = await get_job(connection, job_id)
    assert row is not None
    return json_response(workorder_view(row, owner.org_id, None, state.products.display_names()))


@router.get("", response_model=WorkOrderList, summary="List the organization's work orders")
async def list_workorders(state: StateDep, owner: Owner, page: Annotated[Paging, Depends(paging)]) -> Response:
    async with state.pool.acquire() as connection:
        after_id = None
        if page.after is not None:
            after_id = await workorder_job_id(connection, owner.org_id, page.after)
            if after_id is None:
                raise ApiError(400, "after must be a workorderId of this organization")
        rows = await list_org_workorders(connection, owner.org_id, page.request(after_id))
    names = state.products.display_names()
    return json_response(
        {
            "results": [workorder_view(row, owner.org_id, None, names) for row in rows],
            "page": page.page,
            "limit": page.limit,
        }
    )


@router.get("/{workorderId}", response_model=WorkOrder, summary="Get a work order with per-product status")
async def get_workorder(state: StateDep, workorderId: str, owner: Owner) -> Response:
    """By workorderId (DI-...) or bundleId (BN-...)."""
    async with state.pool.acquire() as connection:
        row = await get_org_workorder(connection, owner.org_id, workorderId)
    if row is None:
        raise not_found("work order")
    return json_response(await _full_view(state, row, owner.org_id))


@router.put("/{workorderId}", response_model=WorkOrder, summary="Update displayName and description")
async def update_workorder(
    state: StateDep,
    workorderId: str,
    owner: Owner,
    update: Annotated[WorkOrderUpdate, Body(description="Only displayName and description can change.")],
) -> Response:
    async with state.pool.acquire() as connection:
        row = await get_org_workorder(connection, owner.org_id, workorderId)
        if row is None:
            raise not_found("work order")
        await update_workorder_text(connection, row["id"], update.displayName, update.description)
        row = await get_org_workorder(connection, owner.org_id, workorderId)
    assert row is not None
    return json_response(await _full_view(state, row, owner.org_id))
