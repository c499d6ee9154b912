"""The pipeline end to end: publish → intake → dispatch → products → acks → status."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from tests.http_product import ProductEndpoint, serve_endpoint
from tests.support import (
    WorkerHandle,
    consumers_of,
    declare_topology,
    get_dead_letters,
    job_ids_for,
    publish,
    publish_raw,
    request,
    wait_for_jobs,
)
from worker.amqp.topology import ERROR_HEADER
from worker.ops.demo import seed_demo_rows
from worker.settings import Settings
from worker.signing import SignatureError, verify
from worker.store.jobs import CancelRefusedError, cancel_job

DEMO_PRODUCTS = """
[products.sessions]
handler = "postgres"
statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1::text[])"]
namespaces = ["userId"]

[products.events]
handler = "postgres"
namespaces = ["userId", "email"]
statements = ["DELETE FROM demo.events WHERE user_id = ANY($1::text[])"]

[products.profiles]
handler = "postgres"
namespaces = ["userId", "email"]
statements = [
    "DELETE FROM demo.profile_attributes WHERE user_id = ANY($1::text[])",
    "DELETE FROM demo.profiles WHERE user_id = ANY($1::text[])",
]
"""

MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]
RunWorker = Callable[..., Awaitable[WorkerHandle]]


def http_products(url: str, secret: str = "s3cret") -> str:
    return f"""
[products.sessions]
handler = "postgres"
namespaces = ["userId", "email"]
statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1::text[])"]

[products.remote]
handler = "http"
url = "{url}"
secret = "{secret}"
"""


async def demo_rows(pool: asyncpg.Pool, user: str) -> int:
    total: int = await pool.fetchval(
        "SELECT (SELECT count(*) FROM demo.sessions WHERE user_id = $1)"
        " + (SELECT count(*) FROM demo.events WHERE user_id = $1)"
        " + (SELECT count(*) FROM demo.profiles WHERE user_id = $1)"
        " + (SELECT count(*) FROM demo.profile_attributes WHERE user_id = $1)",
        user,
    )
    return total


async def product_statuses(pool: asyncpg.Pool, job_id: int) -> dict[str, str]:
    rows = await pool.fetch("SELECT product, status FROM product_status WHERE job_id = $1", job_id)
    return {row["product"]: row["status"] for row in rows}


async def test_published_request_completes_and_deletes_rows(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    user = f"user-{uuid.uuid4()}@example.com"
    async with pool.acquire() as connection:
        await seed_demo_rows(connection, (user,))
    assert await demo_rows(pool, user) == 8
    settings = make_settings(DEMO_PRODUCTS)
    await run_worker(settings)
    _, key = await make_project()

    deletion = request(key, user, description="Delete user sessions", reference_id=user)
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])

    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    assert await product_statuses(pool, job_id) == {"sessions": "success", "events": "success", "profiles": "success"}
    assert await demo_rows(pool, user) == 0
    job = await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert job is not None
    assert job["errors"] is None
    assert job["reference_id"] == user
    assert job["updated_at"] is not None
    assert job["finished_at"] is not None


async def test_many_requests_share_task_messages(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = make_settings(DEMO_PRODUCTS)
    _, key = await make_project()
    requests = [request(key, f"bulk-{i}") for i in range(300)]
    await declare_topology(settings)
    await publish(settings, requests)  # published before the worker starts: one big backlog
    await run_worker(settings)
    job_ids = await job_ids_for(pool, [r.request_id for r in requests])
    statuses = await wait_for_jobs(pool, job_ids)
    assert set(statuses.values()) == {"completed"}
    tasks = await pool.fetchval(
        "SELECT count(DISTINCT task_id) FROM task_chunks WHERE job_id = ANY($1::bigint[])", job_ids
    )
    assert tasks < 300 * 3  # batched: far fewer task messages than job x product


async def test_start_at_in_the_future_waits(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = make_settings(DEMO_PRODUCTS)
    await run_worker(settings)
    _, key = await make_project()
    start_at = int(time.time() * 1000) + 2500
    deletion = request(key, "later@example.com", start_at=start_at)
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    await asyncio.sleep(1.0)
    assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "scheduled"
    assert await pool.fetchval("SELECT count(*) FROM task_chunks WHERE job_id = $1", job_id) == 0

    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    dispatched_at = await pool.fetchval("SELECT dispatched_at FROM jobs WHERE id = $1", job_id)
    assert dispatched_at.timestamp() * 1000 >= start_at


async def test_permanent_product_failure_fails_the_job(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    products = (
        DEMO_PRODUCTS
        + """
[products.broken]
handler = "postgres"
namespaces = ["userId", "email"]
statements = ["DELETE FROM demo.no_such_table WHERE user_id = ANY($1::text[])"]
"""
    )
    settings = make_settings(products)
    await run_worker(settings)
    _, key = await make_project()
    deletion = request(key, "someone@example.com")
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])

    assert await wait_for_jobs(pool, [job_id]) == {job_id: "failed"}
    statuses = await product_statuses(pool, job_id)
    assert statuses == {"sessions": "success", "events": "success", "profiles": "success", "broken": "failed"}
    errors = await pool.fetchval("SELECT errors FROM jobs WHERE id = $1", job_id)
    assert errors == ["broken: postgres: database error 42P01 (UndefinedTableError)"]


async def test_transient_failure_succeeds_on_retry(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    async with serve_endpoint(ProductEndpoint(statuses=[503, 502, 200])) as endpoint:
        settings = make_settings(http_products(endpoint.url))
        handle = await run_worker(settings)
        _, key = await make_project()
        deletion = request(key, "flaky@example.com")
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])

        assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
        assert len(endpoint.calls) == 3
        assert sum(role.stats.retried for role in consumers_of(handle.worker)) == 2
        # Every call is signed (timestamp and key id inside an HMAC-SHA256 of the body).
        for body, headers in endpoint.received:
            assert verify(headers, body, {"1": b"s3cret"}) == "1"
        body, headers = endpoint.received[-1]
        with pytest.raises(SignatureError):
            verify(headers, body + b" ", {"1": b"s3cret"})  # a changed body
        with pytest.raises(SignatureError):
            verify(headers, body, {"1": b"s3cret"}, now=int(headers["x-deletion-timestamp"]) + 3600)  # a replay
        assert endpoint.calls[-1]["items"][0]["identities"] == [
            {"namespace": {"code": "userId"}, "id": "flaky@example.com"}
        ]


async def test_http_4xx_is_permanent_and_results_are_per_job(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    async with serve_endpoint(ProductEndpoint(statuses=[422])) as endpoint:
        settings = make_settings(http_products(endpoint.url))
        await run_worker(settings)
        _, key = await make_project()
        deletion = request(key, "rejected@example.com")
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])
        assert await wait_for_jobs(pool, [job_id]) == {job_id: "failed"}
        assert len(endpoint.calls) == 1  # not retried
        assert await pool.fetchval("SELECT errors FROM jobs WHERE id = $1", job_id) == ["remote: http: answered 422"]


async def test_redelivery_of_every_message_type_changes_nothing(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = make_settings(DEMO_PRODUCTS)
    handle = await run_worker(settings)
    _, key = await make_project()
    deletion = request(key, "twice@example.com")
    # The same request three times: one job.
    await publish(settings, [deletion, deletion])
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE request_id = $1", deletion.request_id) == 1

    before = await pool.fetch(
        "SELECT product, status, chunks_total, chunks_success, chunks_failed FROM product_status"
        " WHERE job_id = $1 ORDER BY product",
        job_id,
    )
    job_before = await pool.fetchrow("SELECT status, errors, finished_at, updated_at FROM jobs WHERE id = $1", job_id)
    chunk = await pool.fetchrow(
        "SELECT task_id, product FROM task_chunks WHERE job_id = $1 AND product = 'events'", job_id
    )
    assert chunk is not None
    task = {
        "taskId": str(chunk["task_id"]),
        "product": "events",
        "items": [
            {
                "jobId": job_id,
                "projectId": 1,
                "datasetId": "ALL",
                "identities": [{"namespace": {"code": "userId"}, "id": "twice@example.com"}],
            }
        ],
    }
    ack_success = {
        "taskId": str(chunk["task_id"]),
        "product": "events",
        "results": [{"jobId": job_id, "status": "success"}],
    }
    ack_failed = {**ack_success, "results": [{"jobId": job_id, "status": "failed", "error": "late failure"}]}
    topology = handle.topology
    await publish_raw(settings, topology.product("events").main, [json.dumps(task).encode()])
    await publish_raw(settings, topology.acks.main, [json.dumps(a).encode() for a in (ack_success, ack_failed)])
    consumed_before = sum(role.stats.consumed for role in consumers_of(handle.worker))
    # Wait until the worker has consumed the redelivered task, its ack and the two acks.
    for _ in range(200):
        if sum(role.stats.consumed for role in consumers_of(handle.worker)) >= consumed_before + 4:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)

    after = await pool.fetch(
        "SELECT product, status, chunks_total, chunks_success, chunks_failed FROM product_status"
        " WHERE job_id = $1 ORDER BY product",
        job_id,
    )
    job_after = await pool.fetchrow("SELECT status, errors, finished_at, updated_at FROM jobs WHERE id = $1", job_id)
    assert [dict(r) for r in after] == [dict(r) for r in before]
    assert dict(job_after or {}) == dict(job_before or {})
    assert await pool.fetchval("SELECT count(*) FROM task_chunks WHERE job_id = $1", job_id) == 3


async def test_cancel_before_dispatch(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = make_settings(DEMO_PRODUCTS)
    await run_worker(settings)
    project_id, key = await make_project()
    deletion = request(key, "cancel-early@example.com", start_at=int(time.time() * 1000) + 1500)
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    async with pool.acquire() as connection:
        await cancel_job(connection, job_id, project_id)
    await asyncio.sleep(2.5)  # past startAt: the dispatcher must leave it alone
    assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "cancelled"
    assert await pool.fetchval("SELECT count(*) FROM task_chunks WHERE job_id = $1", job_id) == 0
    assert set((await product_statuses(pool, job_id)).values()) == {"cancelled"}
    async with pool.acquire() as connection:
        with pytest.raises(CancelRefusedError, match="is cancelled and can no longer be cancelled"):
            await cancel_job(connection, job_id, project_id)


async def test_cancel_during_dispatch(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    async with serve_endpoint(ProductEndpoint(statuses=[200], delay=2.0)) as endpoint:
        settings = make_settings(http_products(endpoint.url))
        await run_worker(settings)
        project_id, key = await make_project()
        deletion = request(key, "cancel-late@example.com")
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])
        await wait_for_jobs(pool, [job_id], statuses=["running"])
        while not endpoint.calls:  # the slow product has the task in hand
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.2)  # a task that takes a while shows its product `running`
        assert (await product_statuses(pool, job_id))["remote"] == "running"
        async with pool.acquire() as connection:
            await cancel_job(connection, job_id, project_id)
        await asyncio.sleep(2.5)  # the product answers success after the cancel
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "cancelled"
        statuses = await product_statuses(pool, job_id)
        assert statuses["remote"] == "cancelled"
        assert statuses["sessions"] in {"success", "cancelled"}


async def test_completed_job_cannot_be_cancelled(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = make_settings(DEMO_PRODUCTS)
    await run_worker(settings)
    project_id, key = await make_project()
    deletion = request(key, "done@example.com")
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    await wait_for_jobs(pool, [job_id])
    async with pool.acquire() as connection:
        with pytest.raises(CancelRefusedError) as refused:
            await cancel_job(connection, job_id, project_id)
    assert refused.value.status == "completed"


async def test_bad_messages_land_in_dead_letter_queues(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = make_settings(DEMO_PRODUCTS, max_identities=100_000)
    handle = await run_worker(settings)
    _, key = await make_project()
    topology = handle.topology
    too_many = {
        "requestId": "too-many",
        "projectKey": key,
        "identities": [{"namespace": {"code": "userId"}, "id": f"u{i}"} for i in range(100_001)],
    }
    bad_requests = [
        b"this is not json",
        json.dumps({"requestId": "no-identities", "projectKey": key}).encode(),
        json.dumps({"requestId": "wrong-type", "projectKey": key, "identities": "alice"}).encode(),
        json.dumps(too_many).encode(),
        json.dumps(
            {
                "requestId": "unknown-project",
                "projectKey": "nope",
                "identities": [{"namespace": {"code": "userId"}, "id": "x"}],
            }
        ).encode(),
        json.dumps(
            {"requestId": "nul", "projectKey": key, "identities": [{"namespace": {"code": "userId"}, "id": "a\u0000b"}]}
        ).encode(),
    ]
    good = request(key, "fine@example.com")
    await publish_raw(settings, topology.requests.main, bad_requests)
    await publish(settings, [good])
    await publish_raw(settings, topology.product("events").main, [b"{}", b"\xff\xfe"])
    await publish_raw(
        settings,
        topology.acks.main,
        [
            b"[]",
            json.dumps(
                {"taskId": "not-a-uuid", "product": "events", "results": [{"jobId": 1, "status": "success"}]}
            ).encode(),
        ],
    )

    dead_requests = await get_dead_letters(settings, topology.requests.dead, len(bad_requests))
    reasons = sorted(str((m.headers or {})[ERROR_HEADER]) for m in dead_requests)
    assert any(r.startswith("json:") for r in reasons)
    assert any("identities" in r and "Field required" in r for r in reasons)
    assert any("valid array" in r for r in reasons)
    assert any("100000" in r or "100,000" in r or "at most" in r for r in reasons)
    assert any(r.startswith("unknown project") for r in reasons)
    for reason in reasons:
        assert "u100000" not in reason  # never the identity values
        assert "a\u0000b" not in reason
    dead_tasks = await get_dead_letters(settings, topology.product("events").dead, 2)
    assert sorted(str((m.headers or {})[ERROR_HEADER])[:7] for m in dead_tasks) == ["json: b", "schema:"]
    dead_acks = await get_dead_letters(settings, topology.acks.dead, 2)
    assert all(str((m.headers or {})[ERROR_HEADER]).startswith("schema") for m in dead_acks)

    # The good request next to the garbage is carried out, and the worker is still up.
    [job_id] = await job_ids_for(pool, [good.request_id])
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    assert not handle.task.done()
