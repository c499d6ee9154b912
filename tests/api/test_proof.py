"""Proof of deletion over HTTP: a job's audit trail and its signed receipt, scoped to the
caller's project (another organization's job answers 404, as none at all)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest

from tests.api.conftest import PRODUCTS, Tenant
from tests.support import end_job
from worker.api.app import create_app
from worker.products import load_products
from worker.receipts.identities import covers
from worker.receipts.signing import generate_private_key, load_public_key, verify_receipt
from worker.settings import Settings
from worker.store.retention import identity_hash

USER = "proof.person@example.com"


@pytest.fixture
def signing_key() -> str:
    return generate_private_key()


@pytest.fixture
async def proof_client(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings], signing_key: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = make_settings(PRODUCTS, receipt_signing_key=signing_key)
    app = create_app(settings, load_products(settings.products_file), pool=pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
        yield http, settings


async def new_job(client: httpx.AsyncClient, tenant: Tenant) -> int:
    answer = await client.delete(f"/public/{tenant.project_key}/users/{USER}", headers=tenant.bearer)
    assert answer.status_code == 200, answer.text
    job_id: int = answer.json()["data"]["jobId"]
    return job_id


async def test_the_audit_trail_of_a_cancelled_job(
    proof_client: tuple[httpx.AsyncClient, Settings], tenant: Tenant, stranger: Tenant
) -> None:
    client, _ = proof_client
    job_id = await new_job(client, tenant)
    assert (
        await client.delete(f"/public/{tenant.project_key}/jobs/{job_id}", headers=tenant.bearer)
    ).status_code == 200
    answer = await client.get(f"/public/{tenant.project_key}/jobs/{job_id}/audit", headers=tenant.bearer)
    assert answer.status_code == 200, answer.text
    trail = answer.json()["data"]
    assert [entry["kind"] for entry in trail["entries"]] == ["job.received", "products", "job.cancelled"]
    caller = tenant.key.split("_")[0] + "_" + tenant.key.split("_")[1]
    assert trail["entries"][0]["detail"]["createdBy"] == caller
    assert trail["entries"][-1]["detail"]["by"] == caller
    assert (trail["intact"], trail["problems"]) == (True, [])
    assert trail["head"]["hash"] == trail["entries"][-1]["hash"]
    assert USER not in answer.text

    for path, headers in (
        (f"/public/{tenant.project_key}/jobs/{job_id}/audit", stranger.bearer),
        (f"/public/{stranger.project_key}/jobs/{job_id}/audit", stranger.bearer),
        (f"/public/{tenant.project_key}/jobs/999999999/audit", tenant.bearer),
    ):
        assert (await client.get(path, headers=headers)).status_code == 404, path
    assert (await client.get(f"/public/{tenant.project_key}/jobs/x/audit", headers=tenant.bearer)).status_code == 400


async def test_a_receipt_is_refused_until_the_job_ends_then_verifies(
    proof_client: tuple[httpx.AsyncClient, Settings], tenant: Tenant, stranger: Tenant, pool: asyncpg.Pool
) -> None:
    client, settings = proof_client
    job_id = await new_job(client, tenant)
    path = f"/public/{tenant.project_key}/jobs/{job_id}/receipt"
    early = await client.get(path, headers=tenant.bearer)
    assert early.status_code == 409
    assert early.json()["error"] == "not_ended"

    async with pool.acquire() as connection:
        await end_job(connection, job_id, "completed")
        workorder = await connection.fetchval("SELECT workorder_id FROM jobs WHERE id = $1", job_id)
    answer = await client.get(path, headers=tenant.bearer)
    assert answer.status_code == 200, answer.text
    key = (await client.get("/receipts/public-key")).json()
    receipt = verify_receipt(answer.content, load_public_key(key["publicKey"]))
    assert (receipt["jobId"], receipt["keyId"]) == (job_id, key["keyId"])
    hash_key = settings.identity_hash_key.get_secret_value().encode()
    assert covers(receipt, identity_hash(hash_key, "userId", USER))
    # The same bytes by work order, and on every later request.
    by_workorder = await client.get(f"/workorder/{workorder}/receipt", headers=tenant.bearer)
    assert by_workorder.content == answer.content
    assert (await client.get(f"/workorder/{workorder}/receipt", headers=stranger.bearer)).status_code == 404
    assert (await client.get(path, headers=stranger.bearer)).status_code == 404
    trail = (await client.get(f"/public/{tenant.project_key}/jobs/{job_id}/audit", headers=tenant.bearer)).json()
    assert trail["data"]["entries"][-1]["kind"] == "receipt.issued"


async def test_without_a_signing_key_the_receipt_routes_answer_404(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get("/receipts/public-key")).status_code == 404
    assert (await client.get(f"/public/{tenant.project_key}/jobs/1/receipt", headers=tenant.bearer)).status_code == 404
