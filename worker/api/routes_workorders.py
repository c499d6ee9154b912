"""The work-order API (`/workorder`): bulk identity deletion with per-product status."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import Response

from schemas.api import ErrorBody, WorkOrder, WorkOrderCreate, WorkOrderList, WorkOrderUpdate
from worker.api.auth import bearer_owner
from worker.api.errors import ApiError, not_found
from worker.api.json_body import json_body_openapi, read_json_body, validate_json_body
from worker.api.paging import Paging, paging
from worker.api.routes_jobs import create_or_find, project_of
from worker.api.shapes import workorder_view
from worker.api.state import ApiState, json_response
from worker.gc_pause import gc_paused
from worker.store.api_keys import ApiKeyOwner
from worker.store.jobs import NewJob
from worker.store.reads import get_org_workorder, get_product_status, list_org_workorders, update_workorder_text

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415)}
router = APIRouter(prefix="/workorder", tags=["work orders"], responses=ERRORS)
# Bodies the routes here read themselves (json_body): documented by the app, not by FastAPI.
SELF_PARSED_BODIES = (WorkOrderCreate,)
Owner = Annotated[ApiKeyOwner, Depends(bearer_owner)]


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
    owner: Owner,
    x_sandbox_name: Annotated[str | None, Header(description="The projectKey of the project.")] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Deletes identities from one dataset or all (`datasetId: ALL`). Committed before the answer."""
    body = await read_json_body(request)
    state: ApiState = request.app.state.api
    async with state.body_budget.reserve(len(body)):
        order = validate_json_body(body, WorkOrderCreate)
        if not x_sandbox_name:
            raise ApiError(400, "name the project in the x-sandbox-name header (its projectKey)")
        project_id = await project_of(request, x_sandbox_name, owner)
        request_id = f"api:{project_id}:{idempotency_key}" if idempotency_key else f"api:{uuid.uuid4()}"
        with gc_paused():  # 100,000 new tuples (see worker.gc_pause)
            identities = [(identity["namespace"]["code"], identity["id"]) for identity in order.identities]
        job = NewJob(
            request_id=request_id,
            project_id=project_id,
            identities=identities,
            action="delete_identity",
            dataset_id=order.datasetId,
            display_name=order.displayName,
            description=order.description,
            created_by=owner.prefix,
        )
        del order, identities  # the budget covers the copy into Postgres; nothing past it
        async with state.pool.acquire() as connection:
            await create_or_find(connection, state, job)
            row = await get_org_workorder(
                connection,
                owner.org_id,
                await connection.fetchval("SELECT workorder_id FROM jobs WHERE request_id = $1", request_id),
            )
    assert row is not None
    return json_response(workorder_view(row, owner.org_id, None, state.products.display_names()))


@router.get("", response_model=WorkOrderList, summary="List the organization's work orders")
async def list_workorders(request: Request, owner: Owner, page: Annotated[Paging, Depends(paging)]) -> Response:
    state: ApiState = request.app.state.api
    async with state.pool.acquire() as connection:
        rows = await list_org_workorders(connection, owner.org_id, page.limit, page.offset)
    names = state.products.display_names()
    return json_response(
        {
            "results": [workorder_view(row, owner.org_id, None, names) for row in rows],
            "page": page.page,
            "limit": page.limit,
        }
    )


@router.get("/{workorderId}", response_model=WorkOrder, summary="Get a work order with per-product status")
async def get_workorder(request: Request, workorderId: str, owner: Owner) -> Response:
    """By workorderId (DI-...) or bundleId (BN-...)."""
    state: ApiState = request.app.state.api
    async with state.pool.acquire() as connection:
        row = await get_org_workorder(connection, owner.org_id, workorderId)
    if row is None:
        raise not_found("work order")
    return json_response(await _full_view(state, row, owner.org_id))


@router.put("/{workorderId}", response_model=WorkOrder, summary="Update displayName and description")
async def update_workorder(
    request: Request,
    workorderId: str,
    owner: Owner,
    update: Annotated[WorkOrderUpdate, Body(description="Only displayName and description can change.")],
) -> Response:
    state: ApiState = request.app.state.api
    async with state.pool.acquire() as connection:
        row = await get_org_workorder(connection, owner.org_id, workorderId)
    if row is None:
        raise not_found("work order")
    async with state.pool.acquire() as connection:
        await update_workorder_text(connection, row["id"], update.displayName, update.description)
        row = await get_org_workorder(connection, owner.org_id, workorderId)
    assert row is not None
    return json_response(await _full_view(state, row, owner.org_id))
