"""`GET /workorder/{id}/identities`: a work order's per-identity outcome, per product.

Lists the identities that failed (`status=failed`): those a product named, and every
identity of a chunk that failed as a whole. Pages by `limit`/`page` like the other lists,
and on at any depth with `after` (the `next` of the previous page). After retention an
identity shows as its keyed hash (`idHash`), its value gone.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from schemas.api import ErrorBody, FailedIdentityList
from worker.api.deps import Owner, StateDep
from worker.api.errors import ApiError, not_found
from worker.api.paging import Paging, paging
from worker.api.shapes import iso
from worker.api.state import ApiState, json_response
from worker.store.identity_results import (
    FailedIdentityRow,
    OffsetTooDeepError,
    cursor_of,
    failed_identity_counts,
    list_failed_identities,
    parse_cursor,
)
from worker.store.reads import get_org_workorder
from worker.store.retention import shown_hash

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404)}
router = APIRouter(prefix="/workorder", tags=["work orders"], responses=ERRORS)


def product_key(state: ApiState, name: str | None) -> str | None:
    """A product named by its key or by its display name (as productStatusDetails shows it)."""
    if name is None:
        return None
    if name in state.products.products:
        return name
    by_display = {display: key for key, display in state.products.display_names().items()}
    if name in by_display:
        return by_display[name]
    raise ApiError(400, "product must be a product of this deployment (its name or its productName)")


def _entry(row: FailedIdentityRow, display_names: dict[str, str]) -> dict[str, Any]:
    return {
        "productName": display_names.get(row.product, row.product),
        "product": row.product,
        "namespace": {"code": row.namespace},
        "id": row.value,
        "idHash": shown_hash(row.value_hash) if row.value is None and row.value_hash is not None else None,
        "status": "failed",
        "error": row.reason,
        "failedAt": iso(row.failed_at) if row.failed_at else None,
        "retrying": row.retrying,
    }


@router.get(
    "/{workorderId}/identities",
    response_model=FailedIdentityList,
    summary="List a work order's failed identities, per product",
)
async def list_identities(
    state: StateDep,
    workorderId: str,
    owner: Owner,
    page: Annotated[Paging, Depends(paging)],
    status: Annotated[str, Query(description="Which outcome to list: `failed`.")] = "failed",
    product: Annotated[str | None, Query(description="Only this product (its name or productName).")] = None,
) -> Response:
    """By product, then in the order the identities were given. `after` takes the `next`
    of the previous page and pages on at any depth."""
    if status != "failed":
        raise ApiError(400, "status must be `failed`: identities are listed by failure (the others succeeded)")
    key = product_key(state, product)
    after = None
    if page.after is not None:
        after = parse_cursor(page.after)
        if after is None:
            raise ApiError(400, "after must be the `next` of a previous page")
    async with state.pool.acquire() as connection:
        row = await get_org_workorder(connection, owner.org_id, workorderId)
        if row is None:
            raise not_found("work order")
        try:
            rows = await list_failed_identities(
                connection, row["id"], product=key, limit=page.limit, offset=page.offset, after=after
            )
        except OffsetTooDeepError as error:
            raise ApiError(400, str(error)) from None
        counts = await failed_identity_counts(connection, row["id"])
    names = state.products.display_names()
    return json_response(
        {
            "results": [_entry(item, names) for item in rows],
            "page": page.page,
            "limit": page.limit,
            "total": counts.get(key, 0) if key is not None else sum(counts.values()),
            "next": cursor_of(rows[-1]) if len(rows) == page.limit else None,
        }
    )
