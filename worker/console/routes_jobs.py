"""Jobs and work orders: the filtered list, a job's page (live product status, audit
trail, receipt), cancelling with confirmation, and finding a person's jobs by identity.

Finding by identity is a POST: the identity value travels in the body, never in a URL
(which browsers keep in history and servers in logs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from worker.api.routes_receipts import signer_of
from worker.console.web import Form, PageNotFoundError, User, api_state, field_text, pool_of, render
from worker.store import console as store
from worker.store.audit import job_audit, verify_chain
from worker.store.jobs import CancelRefusedError, JobNotFoundError, cancel_job
from worker.store.overview import JOB_STATUSES
from worker.store.reads import get_product_status
from worker.store.receipts import ReceiptNotReadyError, issue_receipt

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE_SIZE = 25


def _day(text: str | None, plus_days: int = 0) -> datetime | None:
    try:
        day = datetime.strptime(text or "", "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day + timedelta(days=plus_days)


def _positive(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else 1


async def _project_ids(request: Request, org_id: str) -> tuple[list[dict[str, Any]], list[int]]:
    async with pool_of(request).acquire() as connection:
        projects = await store.org_projects(connection, org_id)
    return projects, [project["id"] for project in projects]


@router.get("/jobs")
async def jobs_page(request: Request, user: User) -> Response:
    query = request.query_params
    projects, project_ids = await _project_ids(request, user.org_id)
    chosen = query.get("project") or None
    if chosen:
        project_ids = [project["id"] for project in projects if project["key"] == chosen]
    status = query.get("status") if query.get("status") in JOB_STATUSES else None
    product = query.get("product") if query.get("product") in api_state(request).products.products else None
    found = store.JobFilter(
        status=status,
        project_key=chosen,
        product=product,
        created_from=_day(query.get("from")),
        created_to=_day(query.get("to"), plus_days=1),
        lookup=query.get("q") or None,
    )
    page = _positive(query.get("page"))
    rows: list[dict[str, Any]] = []
    if project_ids:
        async with pool_of(request).acquire() as connection:
            rows = await store.list_jobs(connection, project_ids, found, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    filters = {key: query.get(key, "") for key in ("status", "project", "product", "from", "to", "q")}
    return render(
        request,
        "jobs.html",
        {
            "jobs": rows[:PAGE_SIZE],
            "page": page,
            "more": len(rows) > PAGE_SIZE,
            "filters": filters,
            "page_query": lambda number: str(request.url.include_query_params(page=number).query),
            "projects": projects,
            "statuses": JOB_STATUSES,
            "products": sorted(api_state(request).products.products),
            "title": "Jobs and work orders",
        },
        user=user,
    )


@router.post("/find")
async def find_page(request: Request, user: User, form: Form) -> Response:
    text = field_text(form, "identity")
    namespace, sep, value = text.partition(":")
    if not sep or not namespace or not value:
        return render(
            request,
            "find.html",
            {"jobs": [], "error": "Write it as namespace:value, e.g. email:a@b.c.", "title": "Find by identity"},
            status=400,
            user=user,
        )
    _, project_ids = await _project_ids(request, user.org_id)
    key = api_state(request).settings.identity_hash_key.get_secret_value().encode()
    async with pool_of(request).acquire() as connection:
        rows = await store.jobs_by_identity(connection, project_ids, key, namespace, value)
    return render(request, "find.html", {"jobs": rows, "error": None, "title": "Find by identity"}, user=user)


async def _job(request: Request, org_id: str, job_id: int) -> dict[str, Any]:
    async with pool_of(request).acquire() as connection:
        row = await store.org_job(connection, org_id, job_id)
    if row is None:
        raise PageNotFoundError("no such job in your organization")
    return row


async def _products(request: Request, job_id: int) -> list[dict[str, Any]]:
    async with pool_of(request).acquire() as connection:
        rows = (await get_product_status(connection, [job_id]))[job_id]
    names = api_state(request).products.display_names()
    return [{**row, "display_name": names.get(row["product"], row["product"])} for row in rows]


@router.get("/jobs/{job_id}")
async def job_page(request: Request, user: User, job_id: int) -> Response:
    job = await _job(request, user.org_id, job_id)
    async with pool_of(request).acquire() as connection:
        entries, head = await job_audit(connection, job_id)
    settings = api_state(request).settings
    return render(
        request,
        "job.html",
        {
            "job": job,
            "products": await _products(request, job_id),
            "audit": entries,
            "audit_check": verify_chain(entries, head),
            "receipts": bool(settings.receipt_signing_key.get_secret_value()),
            "title": f"Job {job_id}",
        },
        user=user,
    )


@router.get("/jobs/{job_id}/status")
async def job_status_fragment(request: Request, user: User, job_id: int) -> Response:
    """The live part of a job's page, fetched again every few seconds while it runs."""
    job = await _job(request, user.org_id, job_id)
    return render(request, "job_status.html", {"job": job, "products": await _products(request, job_id)}, user=user)


@router.get("/jobs/{job_id}/cancel")
async def cancel_page(request: Request, user: User, job_id: int) -> Response:
    job = await _job(request, user.org_id, job_id)
    return render(request, "cancel.html", {"job": job, "error": None, "title": f"Cancel job {job_id}"}, user=user)


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, user: User, form: Form, job_id: int) -> Response:
    job = await _job(request, user.org_id, job_id)
    del form  # checked for its CSRF token
    try:
        async with pool_of(request).acquire() as connection:
            await cancel_job(connection, job_id, job["project_id"], actor=user.prefix)
    except (CancelRefusedError, JobNotFoundError) as error:
        return render(
            request,
            "cancel.html",
            {"job": job, "error": str(error), "title": f"Cancel job {job_id}"},
            status=409,
            user=user,
        )
    return RedirectResponse(f"/console/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}/receipt")
async def receipt(request: Request, user: User, job_id: int) -> Response:
    await _job(request, user.org_id, job_id)
    state = api_state(request)
    signer = signer_of(state)
    key = state.settings.identity_hash_key.get_secret_value().encode()
    try:
        async with pool_of(request).acquire() as connection:
            issued = await issue_receipt(connection, job_id, key, signer)
    except ReceiptNotReadyError:
        raise PageNotFoundError("the job has not ended: no receipt yet") from None
    return Response(
        issued.document,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="receipt-job-{job_id}.json"'},
    )
