"""The OpenDSR 2.0 API (`/opendsr`) for erasure requests: each request is a job.

Requests are authenticated with the organization's API keys like every other route and
name their project in the `x-sandbox-name` header (the project's key), as work orders
do; GET and DELETE may leave it out while the id is used in only one of the
organization's projects. `/opendsr/discovery` and the certificate are public: callback
receivers fetch them to check signatures. Every answer is signed with the processor
certificate (worker.opendsr.signing); without one configured the routes answer 404.
"""

from __future__ import annotations

import base64
import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import orjson
import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from schemas.opendsr import (
    API_VERSION,
    SUPPORTED_REQUEST_TYPES,
    Discovery,
    OpenDsrError,
    OpenDsrRequest,
    RequestCancelled,
    RequestCreated,
    RequestStatusBody,
)
from worker import tracing
from worker.amqp import Topology
from worker.api.deps import Owner, StateDep, checked_callback_urls, fingerprint, project_id_of
from worker.api.errors import ApiError
from worker.api.json_body import budgeted_json_body, json_body_openapi, validate_json_body
from worker.api.state import ApiState
from worker.due_dates import DuePolicy
from worker.opendsr.protocol import (
    IdentityTable,
    RequestRefusedError,
    check_request_type,
    regulation_of,
    request_status,
    rfc3339,
)
from worker.opendsr.signing import ProcessorSigner, SignerConfigError
from worker.store.jobs import CancelRefusedError, JobSizing, NewJob
from worker.store.opendsr import (
    NewOpenDsrRequest,
    OpenDsrRequestRow,
    SubjectRequestIdReusedError,
    cancel_pending,
    create_request,
    find_requests,
)
from worker.webhooks.urls import check_webhook_url

log = structlog.get_logger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenDsrError} for code in (400, 401, 404, 409, 413, 415, 503)
}
router = APIRouter(prefix="/opendsr", tags=["OpenDSR"], responses=ERRORS)
SELF_PARSED_BODIES = (OpenDsrRequest,)
SandboxHeader = Annotated[str | None, Header(description="The projectKey of the project.")]


@functools.lru_cache(maxsize=4)
def _load_signer(certificate: Path | None, key: Path | None, domain: str) -> ProcessorSigner | None:
    # Read once per process: a new certificate takes effect on restart.
    if certificate is None and key is None:
        return None
    if certificate is None or key is None:
        raise SignerConfigError("set both DELETION_OPENDSR_CERTIFICATE_FILE and DELETION_OPENDSR_PRIVATE_KEY_FILE")
    return ProcessorSigner.load(certificate, key, domain)


def signer_of(state: ApiState) -> ProcessorSigner:
    settings = state.settings
    problem = None
    try:
        signer = _load_signer(
            settings.opendsr_certificate_file, settings.opendsr_private_key_file, settings.opendsr_processor_domain
        )
    except SignerConfigError as error:
        signer, problem = None, str(error)
    if problem is not None:
        log.error("opendsr_signer_unusable", error=problem)
    if signer is None:
        raise ApiError(
            404,
            "OpenDSR is not enabled here: the operator sets DELETION_OPENDSR_CERTIFICATE_FILE and"
            " DELETION_OPENDSR_PRIVATE_KEY_FILE",
            "opendsr_not_enabled",
        )
    return signer


def signed(signer: ProcessorSigner, body: dict[str, Any], status: int = 200, *, in_body: bool = False) -> Response:
    """The answer, signed in its headers; `in_body`: also a `processor_signature` field,
    the signature of the body without that field (the spec asks for both)."""
    if in_body:
        body = {**body, "processor_signature": signer.sign(orjson.dumps(body))}
    content = orjson.dumps(body)
    return Response(content, status_code=status, media_type="application/json", headers=signer.headers(content))


def _refused(refusal: RequestRefusedError) -> ApiError:
    return ApiError(refusal.status, refusal.message, refusal.reason)


def _subject_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ApiError(400, "subject_request_id must be a UUID", "invalid_subject_request_id") from None


async def _one_request(state: ApiState, owner: Owner, text: str, project_key: str | None) -> OpenDsrRequestRow:
    subject_id = _subject_id(text)
    async with state.pool.acquire() as connection:
        rows = await find_requests(connection, owner.org_id, subject_id, project_key or None)
    if not rows:
        # The same answer for another organization's request as for none at all.
        raise ApiError(404, "request not found", "request_not_found")
    if len(rows) > 1:
        raise ApiError(400, "this id names requests of several projects; name one in x-sandbox-name", "ambiguous")
    return rows[0]


@router.post(
    "/requests",
    status_code=201,
    response_model=RequestCreated,
    summary="Create an erasure request",
    openapi_extra=json_body_openapi(OpenDsrRequest, "An OpenDSR 2.0 erasure request."),
)
async def create_opendsr_request(
    request: Request, state: StateDep, owner: Owner, x_sandbox_name: SandboxHeader = None
) -> Response:
    """Creates the job (committed before the answer). The same subject_request_id again
    answers with the same request; with another request, 409."""
    signer = signer_of(state)
    async with budgeted_json_body(state, request) as raw:
        body = validate_json_body(raw, OpenDsrRequest)
        if not x_sandbox_name:
            raise ApiError(400, "name the project in the x-sandbox-name header (its projectKey)")
        try:
            check_request_type(body.subject_request_type)
            regulation = regulation_of(body.regulation)
            identities = IdentityTable(state.settings.opendsr_identity_namespaces, state.products).resolve(
                body.subject_identities
            )
        except RequestRefusedError as refusal:
            raise _refused(refusal) from None
        urls = checked_callback_urls(state, body.status_callback_urls)
        for url in urls:
            check_webhook_url(url, allow_private=state.settings.webhook_allow_private)
        project_id = await project_id_of(state, x_sandbox_name, owner)
        subject_id = body.subject_request_id
        submitted = body.submitted_time.astimezone(UTC)
        new = NewOpenDsrRequest(
            subject_request_id=subject_id,
            fingerprint=fingerprint(
                "opendsr", regulation, identities, submitted.isoformat(), list(urls), body.property_id
            ),
            regulation=regulation,
            api_version=body.api_version,
            submitted_time=submitted,
            status_callback_urls=urls,
        )
        job = NewJob(
            request_id=f"opendsr:{subject_id}",
            project_id=project_id,
            identities=identities,
            action="delete_identity",
            display_name="OpenDSR erasure",
            description=f"OpenDSR subject_request_id {subject_id}",
            created_by=owner.prefix,
            regulation=regulation,
            # The processor's clock runs from receipt, as for every other request.
            due_at=DuePolicy(state.settings).due_at(regulation, None),
            trace_parent=tracing.current_traceparent(),
        )
        del body, identities
        settings = state.settings
        try:
            async with state.pool.acquire() as connection:
                await create_request(
                    connection,
                    new,
                    job,
                    products=state.products.names,
                    notify_channel=Topology.for_settings(settings, state.products.names).due_channel,
                    sizing=JobSizing(settings.chunk_size, settings.task_max_bytes),
                )
                rows = await find_requests(connection, owner.org_id, subject_id, x_sandbox_name)
        except SubjectRequestIdReusedError as error:
            raise ApiError(409, str(error), "subject_request_id_reused") from None
    row = rows[0]
    answer = {
        "controller_id": row.controller_id,
        "expected_completion_time": rfc3339(row.expected_completion_time),
        "received_time": rfc3339(row.received_time),
        "encoded_request": base64.b64encode(raw).decode(),
        "subject_request_id": str(row.subject_request_id),
    }
    return signed(signer, answer, 201, in_body=True)


@router.get("/requests/{subject_request_id}", response_model=RequestStatusBody, summary="A request's status")
async def get_opendsr_request(
    state: StateDep, owner: Owner, subject_request_id: str, x_sandbox_name: SandboxHeader = None
) -> Response:
    """`pending` (scheduled), `in_progress` (running), `completed`, or `cancelled`
    (cancelled, or failed: the job's errors are in the work-order view)."""
    signer = signer_of(state)
    row = await _one_request(state, owner, subject_request_id, x_sandbox_name)
    answer = {
        "controller_id": row.controller_id,
        "expected_completion_time": rfc3339(row.expected_completion_time),
        "subject_request_id": str(row.subject_request_id),
        "request_status": request_status(row.job_status),
        "api_version": API_VERSION,
    }
    return signed(signer, answer)


@router.delete(
    "/requests/{subject_request_id}", status_code=202, response_model=RequestCancelled, summary="Cancel a request"
)
async def cancel_opendsr_request(
    state: StateDep, owner: Owner, subject_request_id: str, x_sandbox_name: SandboxHeader = None
) -> Response:
    """Only while `pending`; once cancelled, cancelling again answers the same."""
    signer = signer_of(state)
    row = await _one_request(state, owner, subject_request_id, x_sandbox_name)
    received = datetime.now(UTC)
    try:
        async with state.pool.acquire() as connection:
            await cancel_pending(connection, row.job_id, actor=owner.prefix)
    except CancelRefusedError as refused:
        status = request_status(refused.status)
        raise ApiError(
            400, f"the request is {status}; only a pending request can be cancelled", "not_pending"
        ) from None
    answer = {
        "controller_id": row.controller_id,
        "received_time": rfc3339(received),
        "subject_request_id": str(row.subject_request_id),
        "api_version": API_VERSION,
    }
    return signed(signer, answer, 202, in_body=True)


@router.get("/discovery", response_model=Discovery, summary="What this processor supports (no key needed)")
async def discovery(request: Request, state: StateDep) -> Response:
    signer = signer_of(state)
    table = IdentityTable(state.settings.opendsr_identity_namespaces, state.products)
    answer = {
        "api_version": API_VERSION,
        "supported_identities": table.supported(),
        "supported_subject_request_types": list(SUPPORTED_REQUEST_TYPES),
        "processor_certificate": str(request.url_for("opendsr_certificate")),
    }
    return signed(signer, answer)


@router.get(
    "/certificate.pem",
    name="opendsr_certificate",
    summary="The certificate that signs responses and callbacks (no key needed)",
    response_class=Response,
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
async def certificate(state: StateDep) -> Response:
    return Response(signer_of(state).certificate_pem, media_type="application/x-pem-file")
