"""A new work order from an uploaded CSV (`namespace,id` per line, up to 100,000). The
browser previews the count before submitting (static/console.js); the server parses
and validates the rows against the same schema as `POST /workorder`."""

from __future__ import annotations

import csv
import io

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from schemas.api import WorkOrderCreate
from schemas.messages import MAX_IDENTITIES
from worker.api.deps import create_job, fingerprint
from worker.api.routes_workorders import workorder_job
from worker.console.web import Form, User, api_state, field_text, pool_of, render
from worker.store.console import org_projects

router = APIRouter(prefix="/console", include_in_schema=False)
HEADER = ("namespace", "id")


class CsvError(ValueError):
    pass


def parse_identities(data: bytes) -> list[tuple[str, str]]:
    """(namespace, id) per row; a first row `namespace,id` is a header. Errors name the
    line, never its value."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvError("the file is not UTF-8 text") from None
    identities: list[tuple[str, str]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and tuple(cell.lower() for cell in cells) == HEADER:
            continue
        if len(cells) != 2 or not all(cells):
            raise CsvError(f"line {number}: expected two columns, namespace and id")
        identities.append((cells[0], cells[1]))
        if len(identities) > MAX_IDENTITIES:
            raise CsvError(f"more than {MAX_IDENTITIES:,} identities: split the file")
    if not identities:
        raise CsvError("the file has no identities")
    return identities


async def _form_page(request: Request, user: User, error: str | None, status: int = 200) -> Response:
    async with pool_of(request).acquire() as connection:
        projects = await org_projects(connection, user.org_id)
    context = {"projects": projects, "error": error, "limit": MAX_IDENTITIES, "title": "New work order"}
    return render(request, "new.html", context, status=status, user=user)


@router.get("/new")
async def new_page(request: Request, user: User) -> Response:
    return await _form_page(request, user, None)


@router.post("/new")
async def create(request: Request, user: User, form: Form) -> Response:
    state = api_state(request)
    upload = form.get("file")
    async with pool_of(request).acquire() as connection:
        projects = {row["key"]: row["id"] for row in await org_projects(connection, user.org_id)}
    project_id = projects.get(field_text(form, "project"))
    if project_id is None:
        return await _form_page(request, user, "Choose one of your projects.", 400)
    if not isinstance(upload, UploadFile):
        return await _form_page(request, user, "Choose a CSV file.", 400)
    # The file waits on disk (the form spools it) for the API's parse budget: a
    # 100,000-line CSV is ~70 MB of objects while it is checked and stored, like a work
    # order posted to the API, and the two share the budget.
    async with state.body_budget.reserve(upload.size or state.settings.api_max_body_bytes):
        try:
            identities = parse_identities(await upload.read())
            order = WorkOrderCreate.model_validate(
                {
                    "action": "delete_identity",
                    "displayName": field_text(form, "displayName"),
                    "description": field_text(form, "description"),
                    "identities": [{"namespace": {"code": namespace}, "id": value} for namespace, value in identities],
                }
            )
        except CsvError as error:
            return await _form_page(request, user, str(error), 400)
        except ValidationError as error:
            where = {".".join(str(part) for part in item["loc"][:2]) for item in error.errors()}
            return await _form_page(
                request, user, f"{len(where)} field(s) are not valid: {', '.join(sorted(where)[:5])}", 400
            )
        job = workorder_job(state, order, identities, project_id, user.prefix)
        del order, identities
        request_id = job.request_id  # unique per submission: a fresh request every time
        job_id = await create_job(state, job, family="workorder", key=None, request_fingerprint=fingerprint(request_id))
    return RedirectResponse(f"/console/jobs/{job_id}", status_code=303)
