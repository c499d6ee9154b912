"""A work order's failed identities, listed page by page, and a retry of only those: at
the scale the API accepts (100,000 identities), against the real database.

Dispatch, the outbox and the settle statement are the service's own (worker.store);
only the product is played by the test, which fails 100 named identities in each of the
work order's ten chunks for one product."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest

from tests.api.conftest import Tenant
from worker.store.acks import ChunkResult, apply_acks
from worker.store.dispatch import claim_due_jobs, plan_round, record_dispatch
from worker.store.outbox import OutboxPlan, claim_expired, plan_items, published

PRODUCTS = ["events", "profiles", "sessions"]
IDENTITIES = 100_000
FAILING = "sessions"


def workorder(count: int, **extra: object) -> dict[str, object]:
    return {
        "action": "delete_identity",
        "identities": [{"namespace": {"code": "email"}, "id": f"person{n}@example.com"} for n in range(count)],
        **extra,
    }


def fails(value: str) -> bool:
    """100 of every 10,000: the identities the failing product cannot delete."""
    return int(value.removeprefix("person").split("@")[0]) % 100 == 7


async def dispatch(pool: asyncpg.Pool, job_id: int) -> list[OutboxPlan]:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("UPDATE dispatch_queue SET due_at = '-infinity' WHERE job_id = $1", job_id)
        jobs = [job for job in await claim_due_jobs(connection, 1, IDENTITIES) if job.job_id == job_id]
        round_ = plan_round(jobs, PRODUCTS, 10_000, 1000, 64 * 1024 * 1024)
        await record_dispatch(connection, round_, 60)
    return [OutboxPlan(plan.plan_id, plan.task_ids) for plan in round_.plans]


async def acknowledge(pool: asyncpg.Pool, plans: list[OutboxPlan], *, fail_named: bool) -> float:
    """Play the products: every identity deleted but, for FAILING (when `fail_named`), the
    ones `fails` names. Returns the seconds the settle statements took."""
    results: list[ChunkResult] = []
    async with pool.acquire() as connection:
        for plan in plans:
            [item] = (await plan_items(connection, plan)).items
            values = [identity["id"] for identity in item["identities"]]
            for product, task_id in plan.task_ids.items():
                failed = [value for value in values if fail_named and product == FAILING and fails(value)]
                failures = tuple(("email", value, f"locked: {value}") for value in failed)
                status = "failed" if failures else "success"
                error = f"{len(failures)} identities locked" if failures else None
                deleted = len(values) - len(failed)
                results.append(ChunkResult(task_id, item["jobId"], product, status, error, deleted, 0, failures))
        await published(connection, [plan.plan_id for plan in plans])
        started = time.perf_counter()
        await apply_acks(connection, results)
    return time.perf_counter() - started


@pytest.mark.timeout(300)
async def test_failed_identities_of_a_100000_identity_work_order_page_by_page_and_retried(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {**tenant.bearer, "x-sandbox-name": tenant.project_key}
    created = await client.post("/workorder", json=workorder(IDENTITIES), headers=headers)
    assert created.status_code == 200, created.text
    order_id = created.json()["workorderId"]
    job_id = await pool.fetchval("SELECT id FROM jobs WHERE workorder_id = $1", order_id)
    plans = await dispatch(pool, job_id)
    assert len(plans) == 10
    settle_seconds = await acknowledge(pool, plans, fail_named=True)
    with capsys.disabled():  # a figure for the README, not a limit
        sys.stdout.write(f"\nsettle: 30 chunk results, 1,000 named failures of 100,000: {settle_seconds:.3f} s\n")

    order = (await client.get(f"/workorder/{order_id}", headers=headers)).json()
    assert order["status"] == "failed"
    details = {d["productName"]: d for d in order["productStatusDetails"]}
    assert list(details["Session Replay"])[:3] == ["productName", "productStatus", "createdAt"]
    assert details["Session Replay"]["productStatus"] == "failed"
    assert details["Session Replay"]["identitiesFailed"] == 1000
    assert details["Session Replay"]["deleted"] == IDENTITIES - 1000
    assert details["Event Store"] | {"createdAt": None, "startedAt": None, "finishedAt": None, "durationMs": None} == {
        "productName": "Event Store", "productStatus": "success", "createdAt": None, "deleted": IDENTITIES,
        "wouldDelete": None, "notFound": 0, "identitiesFailed": 0, "retries": 0, "startedAt": None,
        "finishedAt": None, "durationMs": None,
    }  # fmt: skip
    assert details["Event Store"]["durationMs"] >= 0

    # Page by page with `after`: every failed identity once, in the order given.
    listed: list[dict[str, object]] = []
    after: str | None = None
    pages = 0
    while True:
        query = "status=failed&limit=200" + (f"&after={after}" if after else "")
        page = (await client.get(f"/workorder/{order_id}/identities?{query}", headers=headers)).json()
        pages += 1
        listed += page["results"]
        assert page["total"] == 1000
        after = page["next"]
        if after is None:
            break
    assert pages == 6  # five full pages, then an empty one that says there is no more
    expected = [f"person{n}@example.com" for n in range(IDENTITIES) if fails(f"person{n}@")]
    assert [entry["id"] for entry in listed] == expected
    assert {entry["productName"] for entry in listed} == {"Session Replay"}
    assert listed[0]["error"] == f"locked: {expected[0]}"
    # The same page by number, and one product only.
    third = await client.get(f"/workorder/{order_id}/identities?limit=200&page=3&product=sessions", headers=headers)
    assert [entry["id"] for entry in third.json()["results"]] == expected[400:600]
    other = await client.get(f"/workorder/{order_id}/identities?product=Event Store", headers=headers)
    assert other.json()["results"] == []

    # Retry only what failed: one task per failed chunk, carrying only its failed identities.
    retried = await client.post(f"/workorder/{order_id}/retry", json={"products": ["Session Replay"]}, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {
        "jobId": job_id, "status": "running",
        "products": [{"product": "sessions", "chunks": 10, "identities": 1000}],
    }  # fmt: skip
    assert (await client.get(f"/workorder/{order_id}", headers=headers)).json()["status"] == "processing"
    again = await client.post(f"/workorder/{order_id}/retry", headers=headers)
    assert again.status_code == 409  # nothing failed now: it is all on its way
    async with pool.acquire() as connection:
        plans = await claim_expired(connection, 100, 60)
        sizes = [len((await plan_items(connection, plan)).items[0]["identities"]) for plan in plans]
    assert sizes == [100] * 10
    assert {product for plan in plans for product in plan.task_ids} == {FAILING}
    listed_while_retrying = (await client.get(f"/workorder/{order_id}/identities", headers=headers)).json()
    assert all(entry["retrying"] for entry in listed_while_retrying["results"])

    await acknowledge(pool, plans, fail_named=False)
    order = (await client.get(f"/workorder/{order_id}", headers=headers)).json()
    assert order["status"] == "completed"
    sessions = next(d for d in order["productStatusDetails"] if d["productName"] == "Session Replay")
    assert (sessions["productStatus"], sessions["identitiesFailed"], sessions["deleted"], sessions["retries"]) == (
        "success", 0, IDENTITIES, 1
    )  # fmt: skip
    final = (await client.get(f"/workorder/{order_id}/identities", headers=headers)).json()
    assert (final["results"], final["total"]) == ([], 0)
    assert await pool.fetchval("SELECT count(*) FROM identity_failures WHERE job_id = $1", job_id) == 0


async def test_a_chunk_failing_as_a_whole_lists_all_its_identities_without_storing_them(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    headers = {**tenant.bearer, "x-sandbox-name": tenant.project_key}
    created = await client.post("/workorder", json=workorder(30), headers=headers)
    order_id = created.json()["workorderId"]
    job_id = await pool.fetchval("SELECT id FROM jobs WHERE workorder_id = $1", order_id)
    [plan] = await dispatch(pool, job_id)
    async with pool.acquire() as connection:
        await apply_acks(
            connection,
            [
                ChunkResult(task_id, job_id, product, "failed" if product == FAILING else "success", "down")
                for product, task_id in plan.task_ids.items()
            ],
        )
    assert await pool.fetchval("SELECT count(*) FROM identity_failures WHERE job_id = $1", job_id) == 0
    first = (await client.get(f"/workorder/{order_id}/identities?limit=20", headers=headers)).json()
    after = first["next"]
    rest = (await client.get(f"/workorder/{order_id}/identities?limit=20&after={after}", headers=headers)).json()
    assert [e["id"] for e in first["results"] + rest["results"]] == [f"person{n}@example.com" for n in range(30)]
    assert (first["total"], rest["next"], first["results"][0]["error"]) == (30, None, "down")
    bad = await client.get(f"/workorder/{order_id}/identities?status=success", headers=headers)
    assert bad.status_code == 400


async def test_identities_and_retries_of_another_organization_are_not_found(
    client: httpx.AsyncClient, tenant: Tenant, make_tenant: Callable[[str], Awaitable[Tenant]]
) -> None:
    created = await client.post(
        "/workorder", json=workorder(1), headers={**tenant.bearer, "x-sandbox-name": tenant.project_key}
    )
    order_id = created.json()["workorderId"]
    stranger = await make_tenant("org-identities-stranger")
    listed = await client.get(f"/workorder/{order_id}/identities", headers=stranger.bearer)
    retried = await client.post(f"/workorder/{order_id}/retry", headers=stranger.bearer)
    assert (listed.status_code, retried.status_code) == (404, 404)
    not_yet = await client.post(f"/workorder/{order_id}/retry", headers=tenant.bearer)
    assert not_yet.status_code == 409  # scheduled: nothing has failed
