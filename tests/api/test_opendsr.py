"""The OpenDSR API: erasure requests become jobs, and their status is told in the spec's words."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import orjson
import pytest

from tests.api.conftest import Tenant
from tests.opendsr.certs import DOMAIN, ProcessorCertificate, make_certificate
from tests.support import WorkerHandle, wait_for_jobs
from worker.api.app import create_app
from worker.opendsr.protocol import callback_body
from worker.opendsr.signing import ProcessorSigner, verify_signature
from worker.products import load_products
from worker.settings import Settings
from worker.store.events import lifecycle_event
from worker.store.opendsr import FAN_OUT_TARGETS, callback_targets

PRODUCTS = """
[products.sessions]
handler = "postgres"
namespaces = ["email", "userId"]
statements = ["SELECT $1::text[]"]
"""
CALLBACK = "https://controller.example/opendsr/callbacks"


@pytest.fixture
def certificate(tmp_path: Path) -> ProcessorCertificate:
    return make_certificate(tmp_path)


@pytest.fixture
def opendsr_settings(make_settings: Callable[..., Settings], certificate: ProcessorCertificate) -> Settings:
    return make_settings(
        PRODUCTS,
        opendsr_certificate_file=certificate.certificate_file,
        opendsr_private_key_file=certificate.private_key_file,
    )


@pytest.fixture
async def dsr(pool: asyncpg.Pool, opendsr_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(opendsr_settings, load_products(opendsr_settings.products_file), pool=pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.test") as http:
        yield http


def request_body(**fields: Any) -> dict[str, Any]:
    return {
        "subject_request_id": str(uuid4()),
        "subject_request_type": "erasure",
        "submitted_time": "2026-01-02T15:00:00Z",
        "subject_identities": [
            {"identity_type": "email", "identity_value": "jane@example.com", "identity_format": "raw"},
            {"identity_type": "controller_customer_id", "identity_value": "c-42", "identity_format": "raw"},
        ],
        "regulation": "gdpr",
        "api_version": "2.0",
        "status_callback_urls": [CALLBACK],
        **fields,
    }


def headers(tenant: Tenant) -> dict[str, str]:
    return {**tenant.bearer, "x-sandbox-name": tenant.project_key}


def verified(answer: httpx.Response, certificate: ProcessorCertificate) -> dict[str, Any]:
    """The answer's body, once its signature checked out as a controller would check it."""
    verify_signature(answer.headers, answer.content, certificate.pem, domain=DOMAIN)
    body: dict[str, Any] = orjson.loads(answer.content)
    return body


def error_of(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == status
    assert error["errors"][0]["message"] == error["message"]
    return error


async def test_a_request_is_pending_until_due_by_its_regulation(
    dsr: httpx.AsyncClient, tenant: Tenant, certificate: ProcessorCertificate, pool: asyncpg.Pool
) -> None:
    body = request_body(regulation="ccpa")
    created = await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))
    assert created.status_code == 201, created.text
    answer = verified(created, certificate)
    assert answer["controller_id"] == tenant.org
    assert answer["subject_request_id"] == body["subject_request_id"]
    assert base64.b64decode(answer["encoded_request"]) == created.request.content
    received = datetime.fromisoformat(answer["received_time"])
    expected = datetime.fromisoformat(answer["expected_completion_time"])
    assert abs(received - datetime.now(UTC)) < timedelta(minutes=1)
    assert abs(expected - received - timedelta(days=45)) < timedelta(minutes=1)
    # processor_signature: the same certificate's signature of the body without it.
    unsigned = {key: value for key, value in answer.items() if key != "processor_signature"}
    verify_signature({"X-OpenDSR-Signature": answer["processor_signature"]}, orjson.dumps(unsigned), certificate.pem)

    status = await dsr.get(f"/opendsr/requests/{body['subject_request_id']}", headers=tenant.bearer)
    assert verified(status, certificate) == {
        "controller_id": tenant.org,
        "expected_completion_time": answer["expected_completion_time"],
        "subject_request_id": body["subject_request_id"],
        "request_status": "pending",
        "api_version": "2.0",
    }
    job = await pool.fetchrow(
        "SELECT id, regulation, identity_count, callback_urls FROM jobs WHERE request_id = $1",
        f"opendsr:{body['subject_request_id']}",
    )
    assert job is not None
    assert (job["regulation"], job["identity_count"], job["callback_urls"]) == ("ccpa", 2, None)
    values = await pool.fetch("SELECT namespace, value FROM job_identities WHERE job_id = $1 ORDER BY seq", job["id"])
    assert [tuple(v) for v in values] == [("email", "jane@example.com"), ("userId", "c-42")]


async def test_the_same_request_id_is_the_same_request_and_another_body_is_refused(
    dsr: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    body = request_body()
    first = await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))
    again = await dsr.post("/opendsr/requests", json={**body, "api_version": "2.0.1"}, headers=headers(tenant))
    assert (first.status_code, again.status_code) == (201, 201)
    assert {k: v for k, v in first.json().items() if k not in {"encoded_request", "processor_signature"}} == {
        k: v for k, v in again.json().items() if k not in {"encoded_request", "processor_signature"}
    }
    count = await pool.fetchval("SELECT count(*) FROM jobs WHERE project_id = $1", tenant.project_id)
    assert count == 1
    other = request_body(subject_request_id=body["subject_request_id"], regulation="lgpd")
    conflict = await dsr.post("/opendsr/requests", json=other, headers=headers(tenant))
    assert error_of(conflict, 409)["errors"][0]["reason"] == "subject_request_id_reused"


@pytest.mark.parametrize("request_type", ["access", "portability"])
async def test_access_and_portability_are_not_supported(
    dsr: httpx.AsyncClient, tenant: Tenant, request_type: str
) -> None:
    answer = await dsr.post(
        "/opendsr/requests", json=request_body(subject_request_type=request_type), headers=headers(tenant)
    )
    error = error_of(answer, 400)
    assert error["errors"][0]["reason"] == "unsupported_subject_request_type"
    assert request_type in error["message"]


async def test_identities_regulations_and_bodies_the_service_cannot_take(
    dsr: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    async def refused(body: dict[str, Any]) -> dict[str, Any]:
        return error_of(await dsr.post("/opendsr/requests", json=body, headers=headers(tenant)), 400)

    secret = "do-not-echo@example.com"
    unknown = [{"identity_type": "fax_number", "identity_value": secret, "identity_format": "raw"}]
    error = await refused(request_body(subject_identities=unknown))
    assert error["errors"][0]["reason"] == "unsupported_identity_type"
    assert "fax_number" in error["message"]
    assert secret not in str(error)
    # Known to the table, but no product here deletes that namespace.
    no_product = [{"identity_type": "ios_advertising_id", "identity_value": "idfa-1", "identity_format": "raw"}]
    assert (await refused(request_body(subject_identities=no_product)))["errors"][0]["reason"] == (
        "unsupported_identity_type"
    )
    hashed = [{"identity_type": "email", "identity_value": "ab" * 32, "identity_format": "sha256"}]
    assert (await refused(request_body(subject_identities=hashed)))["errors"][0]["reason"] == (
        "unsupported_identity_format"
    )
    assert (await refused(request_body(regulation="hipaa")))["errors"][0]["reason"] == "unsupported_regulation"
    missing = request_body()
    del missing["subject_request_id"]
    error = await refused(missing)
    assert "subject_request_id" in error["message"]
    assert error["errors"][0]["domain"] == "Validation"
    assert secret not in str(await refused(request_body(subject_request_id="nope", subject_identities=unknown)))
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE project_id = $1", tenant.project_id) == 0


async def test_a_request_goes_from_pending_to_completed(
    dsr: httpx.AsyncClient,
    tenant: Tenant,
    certificate: ProcessorCertificate,
    opendsr_settings: Settings,
    pool: asyncpg.Pool,
    run_worker: Callable[..., Any],
) -> None:
    body = request_body()
    assert (await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))).status_code == 201
    url = f"/opendsr/requests/{body['subject_request_id']}"
    assert verified(await dsr.get(url, headers=tenant.bearer), certificate)["request_status"] == "pending"
    job_id = await pool.fetchval("SELECT id FROM jobs WHERE project_id = $1", tenant.project_id)
    async with pool.acquire() as connection:
        targets = await callback_targets(connection, [job_id, -1])
    assert list(targets) == [job_id]
    assert targets[job_id].status_callback_urls == (CALLBACK,)
    assert str(targets[job_id].subject_request_id) == body["subject_request_id"]

    handle: WorkerHandle = await run_worker(opendsr_settings)
    assert handle is not None
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    assert verified(await dsr.get(url, headers=tenant.bearer), certificate)["request_status"] == "completed"
    refused = await dsr.delete(url, headers=tenant.bearer)
    assert error_of(refused, 400)["errors"][0]["reason"] == "not_pending"


async def test_a_pending_request_can_be_cancelled(
    dsr: httpx.AsyncClient, tenant: Tenant, certificate: ProcessorCertificate, pool: asyncpg.Pool
) -> None:
    body = request_body()
    assert (await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))).status_code == 201
    url = f"/opendsr/requests/{body['subject_request_id']}"
    cancelled = await dsr.delete(url, headers=tenant.bearer)
    assert cancelled.status_code == 202
    answer = verified(cancelled, certificate)
    assert {k: answer[k] for k in ("controller_id", "subject_request_id", "api_version")} == {
        "controller_id": tenant.org,
        "subject_request_id": body["subject_request_id"],
        "api_version": "2.0",
    }
    assert verified(await dsr.get(url, headers=tenant.bearer), certificate)["request_status"] == "cancelled"
    assert await pool.fetchval("SELECT status FROM jobs WHERE project_id = $1", tenant.project_id) == "cancelled"
    assert (await dsr.delete(url, headers=tenant.bearer)).status_code == 202  # again: the same answer


async def test_the_jobs_events_become_signed_status_callbacks(
    dsr: httpx.AsyncClient, tenant: Tenant, certificate: ProcessorCertificate, pool: asyncpg.Pool
) -> None:
    """What the notify role does with them: the events the triggers wrote for the job, fanned
    out to the request's callback URLs, each sent as the spec's callback body, signed."""
    second = "https://second.example/cb"
    body = request_body(status_callback_urls=[CALLBACK, second])
    assert (await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))).status_code == 201
    assert (await dsr.delete(f"/opendsr/requests/{body['subject_request_id']}", headers=tenant.bearer)).is_success
    job_id = await pool.fetchval("SELECT id FROM jobs WHERE project_id = $1", tenant.project_id)
    changes = await pool.fetch(
        "SELECT o.id AS outbox_id, o.occurred_at, e.* FROM event_outbox o"
        " CROSS JOIN LATERAL unnest(o.events) WITH ORDINALITY AS e WHERE e.job_id = $1 ORDER BY o.id, e.ordinality",
        job_id,
    )
    events = orjson.dumps([lifecycle_event(change) for change in changes]).decode()
    fan_out = (
        "WITH events AS (SELECT e AS event, e->>'eventId' AS event_id, e->>'type' AS type,"
        " (e->>'jobId')::bigint AS job_id FROM jsonb_array_elements($1::text::jsonb) AS e)" + FAN_OUT_TARGETS
    )
    signer = ProcessorSigner.load(certificate.certificate_file, certificate.private_key_file)
    async with pool.acquire() as connection:
        targets = await connection.fetch(fan_out, events)
        requests = await callback_targets(connection, [job_id])
    sent = []
    for target in targets:
        callback = callback_body(target["event"], requests[job_id], target["url"])
        verify_signature(signer.headers(callback), callback, certificate.pem, domain=DOMAIN)
        sent.append((target["url"], orjson.loads(callback)["request_status"]))
    assert sorted(sent) == sorted([(url, s) for url in (CALLBACK, second) for s in ("pending", "cancelled")])


async def test_discovery_lists_what_products_here_can_delete(
    dsr: httpx.AsyncClient, certificate: ProcessorCertificate
) -> None:
    answer = await dsr.get("/opendsr/discovery")  # no key: receivers of callbacks fetch it
    document = verified(answer, certificate)
    assert document["api_version"] == "2.0"
    assert document["supported_subject_request_types"] == ["erasure"]
    assert document["supported_identities"] == [
        {"identity_type": "controller_customer_id", "identity_format": "raw"},
        {"identity_type": "email", "identity_format": "raw"},
    ]
    assert document["processor_certificate"] == "https://api.test/opendsr/certificate.pem"
    pem = await dsr.get(document["processor_certificate"])
    assert pem.status_code == 200
    assert pem.content == certificate.pem


async def test_another_organization_sees_nothing(dsr: httpx.AsyncClient, tenant: Tenant, stranger: Tenant) -> None:
    body = request_body()
    assert (await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))).status_code == 201
    url = f"/opendsr/requests/{body['subject_request_id']}"
    missing = f"/opendsr/requests/{uuid4()}"
    for path in (url, missing):
        assert error_of(await dsr.get(path, headers=stranger.bearer), 404)["message"] == "request not found"
        assert error_of(await dsr.delete(path, headers=stranger.bearer), 404)["message"] == "request not found"
    # Nor can it file into a project of another organization.
    other = {**stranger.bearer, "x-sandbox-name": tenant.project_key}
    error_of(await dsr.post("/opendsr/requests", json=request_body(), headers=other), 404)
    error_of(await dsr.get(url), 401)


async def test_without_a_certificate_opendsr_is_off(client: httpx.AsyncClient, tenant: Tenant) -> None:
    answer = await client.post("/opendsr/requests", json=request_body(), headers=headers(tenant))
    assert error_of(answer, 404)["errors"][0]["reason"] == "opendsr_not_enabled"
    assert error_of(await client.get("/opendsr/discovery"), 404)
    # Other routes keep their own error shape.
    assert (await client.get("/workorder/nope", headers=tenant.bearer)).json()["error"] == "not_found"


async def test_a_running_request_is_in_progress_and_can_no_longer_be_cancelled(
    dsr: httpx.AsyncClient, tenant: Tenant, certificate: ProcessorCertificate, pool: asyncpg.Pool
) -> None:
    body = request_body()
    assert (await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))).status_code == 201
    # As dispatch leaves it (no dispatcher runs here).
    await pool.execute("UPDATE jobs SET status = 'running' WHERE project_id = $1", tenant.project_id)
    url = f"/opendsr/requests/{body['subject_request_id']}"
    assert verified(await dsr.get(url, headers=tenant.bearer), certificate)["request_status"] == "in_progress"
    error = error_of(await dsr.delete(url, headers=tenant.bearer), 400)
    assert (error["errors"][0]["reason"], error["message"]) == (
        "not_pending",
        "the request is in_progress; only a pending request can be cancelled",
    )
    assert await pool.fetchval("SELECT status FROM jobs WHERE project_id = $1", tenant.project_id) == "running"
