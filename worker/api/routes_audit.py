"""A job's audit trail: `GET /public/{projectKey}/jobs/{jobId}/audit`.

Scoped like the other Jobs API routes: a job of another project, or of another
organization's project, answers as none at all (404). The server also recomputes the
chain and says whether it holds; a client that trusts nobody recomputes it from the
entries (each carries the exact text its hash covers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from schemas.api import ErrorBody
from schemas.audit import AuditEnvelope
from worker.api.auth import bearer_owner
from worker.api.deps import StateDep, project_id_of
from worker.api.errors import not_found
from worker.api.routes_jobs import parse_job_id
from worker.api.state import json_response
from worker.store.api_keys import ApiKeyOwner
from worker.store.audit import entry_view, job_audit, verify_chain
from worker.store.reads import get_project_job

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404)}

router = APIRouter(prefix="/public", tags=["proof of deletion"], responses=ERRORS)
# A default rather than an Annotated alias (see routes_jobs): FastAPI resolves it here.
authenticated = Depends(bearer_owner)


@router.get("/{projectKey}/jobs/{jobId}/audit", response_model=AuditEnvelope, summary="A job's audit trail")
async def get_audit(state: StateDep, projectKey: str, jobId: str, owner: ApiKeyOwner = authenticated) -> Response:
    """Every step of the job's life, oldest first, hash-chained: an entry changed or
    removed after it was written breaks the chain (`intact` false, `problems` say where)."""
    project_id = await project_id_of(state, projectKey, owner)
    job_id = parse_job_id(jobId)
    async with state.pool.acquire() as connection:
        if await get_project_job(connection, project_id, job_id) is None:
            raise not_found("job")
        entries, head = await job_audit(connection, job_id)
    check = verify_chain(entries, head)
    return json_response(
        {
            "data": {
                "jobId": job_id,
                "entries": [entry_view(entry) for entry in entries],
                "head": {"seq": head.seq, "hash": head.hash.hex()} if head else None,
                "intact": check.intact,
                "problems": check.problems,
            }
        }
    )
