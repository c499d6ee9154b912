"""The Jobs API, both forms: every status code and fallback rule of the seeds."""

from __future__ import annotations

import time

import asyncpg
import httpx
import pytest

from tests.api.conftest import Tenant
from worker.store.jobs import NewJob, create_jobs

FORMS = ["/public", "/api/v1"]
# The seed's fields, in its order, then ours (due dates).
SEED_JOB_FIELDS = [
    "jobId",
    "description",
    "status",
    "projectId",
    "action",
    "referenceId",
    "createdAt",
    "updatedAt",
    "startAt",
    "errors",
]
JOB_FIELDS = [*SEED_JOB_FIELDS, "regulation", "dueAt", "dryRun"]


def auth(tenant: Tenant, form: str) -> dict[str, str]:
    return tenant.bearer if form == "/public" else tenant.bare


async def add_jobs(pool: asyncpg.Pool, tenant: Tenant, count: int) -> list[int]:
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [
                NewJob(
                    request_id=f"list-{tenant.project_id}-{i}",
                    project_id=tenant.project_id,
                    identities=[("userId", f"u{i}")],
                )
                for i in range(count)
            ],
            ["sessions"],
            None,
        )
    return sorted(created.values())


@pytest.mark.parametrize("form", FORMS)
async def test_delete_user_creates_a_job_that_get_sees(client: httpx.AsyncClient, tenant: Tenant, form: str) -> None:
    answer = await client.delete(f"{form}/{tenant.project_key}/users/shekar@example.com", headers=auth(tenant, form))
    assert answer.status_code == 200, answer.text
    job = answer.json()["data"]
    assert list(job) == JOB_FIELDS
    assert job["status"] == "scheduled"
    assert job["action"] == "delete_user_data"
    assert job["referenceId"] == "shekar@example.com"
    assert job["description"] == "Delete user sessions of userId = shekar@example.com"
    assert job["projectId"] == tenant.project_id
    assert job["updatedAt"] is None
    assert job["errors"] is None
    assert abs(job["createdAt"] - time.time() * 1000) < 60_000

    fetched = await client.get(f"{form}/{tenant.project_key}/jobs/{job['jobId']}", headers=auth(tenant, form))
    assert fetched.status_code == 200
    # The view of one job adds what each product did, after the rest.
    shown = fetched.json()["data"]
    assert list(shown) == [*JOB_FIELDS, "products"]
    assert {**shown, "products": None} == {**job, "products": None}
    assert all(p["status"] == "waiting" and p["identitiesFailed"] == 0 for p in shown["products"])


async def test_delete_user_with_start_at_and_idempotency_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    start_at = int(time.time() * 1000) + 3_600_000
    headers = {**tenant.bearer, "Idempotency-Key": "retry-me"}
    first = await client.delete(f"/public/{tenant.project_key}/users/u1", params={"startAt": start_at}, headers=headers)
    again = await client.delete(f"/public/{tenant.project_key}/users/u1", params={"startAt": start_at}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["startAt"] == start_at
    assert again.json()["data"]["jobId"] == first.json()["data"]["jobId"]
    bad = await client.delete(
        f"/public/{tenant.project_key}/users/u1", params={"startAt": "soon"}, headers=tenant.bearer
    )
    assert bad.status_code == 400
    assert bad.json() == {"error": "bad_request", "message": "startAt must be a time in epoch milliseconds"}


@pytest.mark.parametrize("form", FORMS)
async def test_list_is_newest_first_with_paging_fallbacks(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, form: str
) -> None:
    job_ids = await add_jobs(pool, tenant, 60)
    newest_first = list(reversed(job_ids))

    async def page(**params: str | int) -> list[int]:
        answer = await client.get(f"{form}/{tenant.project_key}/jobs", params=params, headers=auth(tenant, form))
        assert answer.status_code == 200
        return [job["jobId"] for job in answer.json()["data"]]

    assert await page() == newest_first[:50]
    assert await page(limit=10) == newest_first[:10]
    assert await page(limit=200) == newest_first
    assert await page(limit=1) == newest_first[:1]
    for fallback in (0, 201, -3, "abc", ""):
        assert await page(limit=fallback) == newest_first[:50]
    assert await page(limit=50, page=2) == newest_first[50:]
    assert await page(limit=50, page=3) == []
    for fallback in (0, -1, "abc"):
        assert await page(limit=10, page=fallback) == newest_first[:10]


@pytest.mark.parametrize("form", FORMS)
async def test_get_rejects_non_integer_ids_and_misses_absent_ones(
    client: httpx.AsyncClient, tenant: Tenant, form: str
) -> None:
    for bad in ("abc", "1.5", "12x"):
        answer = await client.get(f"{form}/{tenant.project_key}/jobs/{bad}", headers=auth(tenant, form))
        assert answer.status_code == 400
        assert answer.json() == {"error": "bad_request", "message": "jobId must be an integer"}
    for absent in ("999999999", "0", "-4", str(2**70)):
        answer = await client.get(f"{form}/{tenant.project_key}/jobs/{absent}", headers=auth(tenant, form))
        assert answer.status_code == 404
        assert answer.json() == {"error": "not_found", "message": "job not found"}
    unknown_project = await client.get(f"{form}/NoSuchProjectKey1234/jobs", headers=auth(tenant, form))
    assert unknown_project.status_code == 404
    assert unknown_project.json() == {"error": "not_found", "message": "project not found"}


@pytest.mark.parametrize(("form", "refused"), [("/public", 400), ("/api/v1", 501)])
async def test_cancel(client: httpx.AsyncClient, tenant: Tenant, form: str, refused: int) -> None:
    created = await client.delete(f"{form}/{tenant.project_key}/users/cancel-me", headers=auth(tenant, form))
    job_id = created.json()["data"]["jobId"]
    cancelled = await client.delete(f"{form}/{tenant.project_key}/jobs/{job_id}", headers=auth(tenant, form))
    assert cancelled.status_code == 200
    job = cancelled.json()["data"]
    assert job["status"] == "cancelled"
    assert job["updatedAt"] is not None
    again = await client.delete(f"{form}/{tenant.project_key}/jobs/{job_id}", headers=auth(tenant, form))
    assert again.status_code == refused
    assert again.json()["message"] == f"job {job_id} is cancelled and can no longer be cancelled"
    assert (await client.delete(f"{form}/{tenant.project_key}/jobs/x1", headers=auth(tenant, form))).status_code == 400
    assert (
        await client.delete(f"{form}/{tenant.project_key}/jobs/99999999", headers=auth(tenant, form))
    ).status_code == 404


@pytest.mark.parametrize(("form", "refused"), [("/public", 400), ("/api/v1", 501)])
async def test_completed_job_cannot_be_cancelled(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, form: str, refused: int
) -> None:
    [job_id] = await add_jobs(pool, tenant, 1)
    await pool.execute("UPDATE jobs SET status = 'completed', finished_at = now() WHERE id = $1", job_id)
    answer = await client.delete(f"{form}/{tenant.project_key}/jobs/{job_id}", headers=auth(tenant, form))
    assert answer.status_code == refused
    assert answer.json()["error"] == "not_cancellable"


@pytest.mark.parametrize("form", FORMS)
async def test_missing_or_wrong_key_is_401(client: httpx.AsyncClient, tenant: Tenant, form: str) -> None:
    url = f"{form}/{tenant.project_key}/jobs"
    for headers in ({}, {"Authorization": "Bearer dwk_AAAAAAAA_wrong"}, {"Authorization": "dwk_nonsense"}):
        answer = await client.get(url, headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
    if form == "/public":  # the newer form insists on Bearer
        assert (await client.get(url, headers=tenant.bare)).status_code == 401
    else:  # the older form takes the bare key (and tolerates Bearer)
        assert (await client.get(url, headers=tenant.bearer)).status_code == 200


@pytest.mark.parametrize("form", FORMS)
async def test_another_organizations_resources_look_absent(
    client: httpx.AsyncClient, tenant: Tenant, stranger: Tenant, form: str
) -> None:
    created = await client.delete(f"{form}/{tenant.project_key}/users/private", headers=auth(tenant, form))
    job_id = created.json()["data"]["jobId"]
    other = auth(stranger, form)
    missing = {"error": "not_found", "message": "project not found"}
    for method, path in (
        ("GET", f"{form}/{tenant.project_key}/jobs"),
        ("GET", f"{form}/{tenant.project_key}/jobs/{job_id}"),
        ("DELETE", f"{form}/{tenant.project_key}/jobs/{job_id}"),
        ("DELETE", f"{form}/{tenant.project_key}/users/someone"),
    ):
        answer = await client.request(method, path, headers=other)
        assert answer.status_code == 404, path
        assert answer.json() == missing
    # The stranger's own project does not reach the job either.
    answer = await client.get(f"{form}/{stranger.project_key}/jobs/{job_id}", headers=other)
    assert answer.json() == {"error": "not_found", "message": "job not found"}
    still = await client.get(f"{form}/{tenant.project_key}/jobs/{job_id}", headers=auth(tenant, form))
    assert still.json()["data"]["status"] == "scheduled"
