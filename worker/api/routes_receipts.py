"""Signed deletion receipts: `GET /public/{projectKey}/jobs/{jobId}/receipt`,
`GET /workorder/{workorderId}/receipt`, and the key that verifies them at
`GET /receipts/public-key`.

A receipt is answered as the stored bytes (the signed file itself, to be kept as is).
A job that has not ended answers 409; a deployment without a signing key answers 404
for all three routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from schemas.api import ErrorBody
from schemas.receipts import ReceiptDocument, ReceiptPublicKey
from worker.api.auth import bearer_owner
from worker.api.deps import Owner, StateDep, project_id_of
from worker.api.errors import ApiError, not_found
from worker.api.routes_jobs import parse_job_id
from worker.api.state import ApiState, json_response
from worker.receipts.signing import ALGORITHM, ReceiptSigner, public_key_text
from worker.store.api_keys import ApiKeyOwner
from worker.store.reads import get_org_workorder, get_project_job
from worker.store.receipts import ReceiptNotReadyError, issue_receipt

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 409)}

router = APIRouter(tags=["proof of deletion"], responses=ERRORS)
# A default rather than an Annotated alias (see routes_jobs): FastAPI resolves it here.
authenticated = Depends(bearer_owner)
_signers: dict[str, ReceiptSigner] = {}


def signer_of(state: ApiState) -> ReceiptSigner:
    key = state.settings.receipt_signing_key.get_secret_value()
    if not key:
        raise ApiError(404, "receipts are not enabled here (no DELETION_RECEIPT_SIGNING_KEY)")
    if key not in _signers:
        _signers.clear()
        _signers[key] = ReceiptSigner(key)
    return _signers[key]


async def _receipt(state: ApiState, job_id: int) -> Response:
    signer = signer_of(state)
    hash_key = state.settings.identity_hash_key.get_secret_value().encode()
    async with state.pool.acquire() as connection:
        try:
            receipt = await issue_receipt(connection, job_id, hash_key, signer)
        except ReceiptNotReadyError as error:
            raise ApiError(409, str(error), "not_ended") from None
    return Response(receipt.document, media_type="application/json")


@router.get("/receipts/public-key", response_model=ReceiptPublicKey, summary="The key that verifies receipts")
async def public_key(state: StateDep) -> Response:
    signer = signer_of(state)
    return json_response(
        {"algorithm": ALGORITHM, "keyId": signer.key_id, "publicKey": public_key_text(signer.public_key)}
    )


@router.get("/public/{projectKey}/jobs/{jobId}/receipt", response_model=ReceiptDocument, summary="A job's receipt")
async def job_receipt(state: StateDep, projectKey: str, jobId: str, owner: ApiKeyOwner = authenticated) -> Response:
    """The signed receipt of an ended job, issued on the first request and the same
    bytes afterwards; 409 while the job has not ended."""
    project_id = await project_id_of(state, projectKey, owner)
    job_id = parse_job_id(jobId)
    async with state.pool.acquire() as connection:
        if await get_project_job(connection, project_id, job_id) is None:
            raise not_found("job")
    return await _receipt(state, job_id)


@router.get("/workorder/{workorderId}/receipt", response_model=ReceiptDocument, summary="A work order's receipt")
async def workorder_receipt(state: StateDep, workorderId: str, owner: Owner) -> Response:
    """By workorderId (DI-...) or bundleId (BN-...); as the job's receipt."""
    async with state.pool.acquire() as connection:
        row = await get_org_workorder(connection, owner.org_id, workorderId)
    if row is None:
        raise not_found("work order")
    return await _receipt(state, row["id"])
