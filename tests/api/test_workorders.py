"""The work-order API of seed 003: create, read (with productStatusDetails), update, list."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import orjson
import pytest

from tests.api.conftest import Tenant
from tests.support import WorkerHandle, wait_for_jobs
from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def order(identities: int = 3, **fields: object) -> dict[str, object]:
    return {
        "action": "delete_identity",
        "datasetId": "c48b51623ec641a2949d339bad69cb15",
        "displayName": "Example Record Delete Request",
        "description": "Cleanup identities required by Jira request 12345.",
        "identities": [{"namespace": {"code": "email"}, "id": f"person{i}@example.com"} for i in range(identities)],
        **fields,
    }


def headers(tenant: Tenant) -> dict[str, str]:
    return {**tenant.bearer, "x-sandbox-name": tenant.project_key}


async def test_create_answers_the_seed_shape(client: httpx.AsyncClient, tenant: Tenant) -> None:
    answer = await client.post("/workorder", json=order(), headers=headers(tenant))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert list(body) == [
        "workorderId", "orgId", "bundleId", "action", "createdAt", "updatedAt", "operationCount", "status",
        "createdBy", "datasetId", "displayName", "description",
        "regulation", "dueAt",  # beyond the seed: due dates
        "dryRun",  # beyond the seed: dry runs
    ]  # fmt: skip
    assert body["workorderId"].startswith("DI-")
    assert body["bundleId"].startswith("BN-")
    assert body["orgId"] == tenant.org
    assert body["action"] == "identity-delete"
    assert body["status"] == "received"
    assert body["operationCount"] == 3
    assert body["createdBy"] == "_".join(tenant.key.split("_")[:2])  # the key's prefix, never its secret
    assert ISO.match(body["createdAt"])
    assert ISO.match(body["updatedAt"])
    assert body["datasetId"] == "c48b51623ec641a2949d339bad69cb15"


async def test_get_by_workorder_or_bundle_id_with_product_status(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = (await client.post("/workorder", json=order(), headers=headers(tenant))).json()
    for identifier in (created["workorderId"], created["bundleId"]):
        answer = await client.get(f"/workorder/{identifier}", headers=tenant.bearer)
        assert answer.status_code == 200
        details = answer.json()["productStatusDetails"]
        assert [d["productName"] for d in details] == ["Event Store", "Profile Service", "Session Replay"]
        assert {d["productStatus"] for d in details} == {"waiting"}
        assert all(ISO.match(d["createdAt"]) for d in details)


async def test_put_changes_only_the_two_fields(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = (await client.post("/workorder", json=order(), headers=headers(tenant))).json()
    url = f"/workorder/{created['bundleId']}"
    answer = await client.put(
        url, json={"displayName": "Update - displayName", "description": "Update - description"}, headers=tenant.bearer
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["displayName"], body["description"]) == ("Update - displayName", "Update - description")
    assert body["updatedAt"] >= body["createdAt"]
    assert "productStatusDetails" in body
    refused = await client.put(url, json={"datasetId": "other", "displayName": "x"}, headers=tenant.bearer)
    assert refused.status_code == 400
    assert refused.json() == {"error": "bad_request", "message": "datasetId: cannot be set here"}
    unchanged = (await client.get(url, headers=tenant.bearer)).json()
    assert (unchanged["displayName"], unchanged["datasetId"]) == ("Update - displayName", created["datasetId"])


async def test_list_is_the_organizations_work_orders(
    client: httpx.AsyncClient, tenant: Tenant, stranger: Tenant
) -> None:
    mine = [(await client.post("/workorder", json=order(1), headers=headers(tenant))).json() for _ in range(3)]
    await client.post("/workorder", json=order(1), headers=headers(stranger))
    answer = await client.get("/workorder", params={"limit": 2}, headers=tenant.bearer)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["page"], body["limit"]) == (1, 2)
    assert [w["workorderId"] for w in body["results"]] == [mine[2]["workorderId"], mine[1]["workorderId"]]
    fallback = (await client.get("/workorder", params={"limit": "x", "page": "-1"}, headers=tenant.bearer)).json()
    assert (fallback["page"], fallback["limit"]) == (1, 50)
    assert {w["orgId"] for w in fallback["results"]} == {tenant.org}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (order(action="delete_everything"), "action: Input should be 'delete_identity'"),
        (order(identities=0), "identities: List should have at least 1 item after validation, not 0"),
        (order(identities=100_001), "identities: List should have at most 100000 items after validation, not 100001"),
        (
            {**order(), "identities": [{"namespace": {}, "id": "secret@example.com"}]},
            "identities.0.namespace.code: Field required",
        ),
        ({**order(), "identities": [{"namespace": {"code": "email"}}]}, "identities.0.id: Field required"),
        ({**order(), "priority": "high"}, "priority: cannot be set here"),
    ],
)
async def test_bad_work_orders_are_400_with_a_reason(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], message: str
) -> None:
    answer = await client.post("/workorder", json=body, headers=headers(tenant))
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "message": message}
    assert "secret@example.com" not in answer.text


async def test_body_content_type_and_json_errors(
    client: httpx.AsyncClient, tenant: Tenant, api_settings: Settings
) -> None:
    not_json = await client.post(
        "/workorder", content=b"{nope", headers={**headers(tenant), "content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["message"] == "the body is not valid JSON"
    wrong_type = await client.post(
        "/workorder", content=json.dumps(order()), headers={**headers(tenant), "content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    too_big = b'{"x": "' + b"a" * api_settings.api_max_body_bytes + b'"}'
    answer = await client.post(
        "/workorder", content=too_big, headers={**headers(tenant), "content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"
    no_project = await client.post("/workorder", json=order(), headers=tenant.bearer)
    assert no_project.status_code == 400
    assert "x-sandbox-name" in no_project.json()["message"]


async def test_other_organizations_work_orders_look_absent(
    client: httpx.AsyncClient, tenant: Tenant, stranger: Tenant
) -> None:
    created = (await client.post("/workorder", json=order(), headers=headers(tenant))).json()
    for identifier in (created["workorderId"], created["bundleId"], "DI-00000000-0000-0000-0000-000000000000"):
        got = await client.get(f"/workorder/{identifier}", headers=stranger.bearer)
        put = await client.put(f"/workorder/{identifier}", json={"displayName": "x"}, headers=stranger.bearer)
        assert got.status_code == put.status_code == 404
        assert got.json() == put.json() == {"error": "not_found", "message": "work order not found"}
    foreign_project = await client.post(
        "/workorder", json=order(), headers={**stranger.bearer, "x-sandbox-name": tenant.project_key}
    )
    assert foreign_project.status_code == 404
    assert foreign_project.json() == {"error": "not_found", "message": "project not found"}


@pytest.mark.timeout(120)
async def test_100000_identities_accepted_and_completed_end_to_end(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    tenant: Tenant,
    api_settings: Settings,
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    await pool.execute("INSERT INTO demo.sessions (user_id) SELECT 'wo-' || g FROM generate_series(1, 1000) g")
    await run_worker(api_settings)
    body = order(0)
    body["identities"] = [{"namespace": {"code": "userId"}, "id": f"wo-{i}"} for i in range(100_000)]
    answer = await client.post("/workorder", json=body, headers=headers(tenant))
    assert answer.status_code == 200
    created = answer.json()
    assert created["operationCount"] == 100_000
    job_id = await pool.fetchval("SELECT id FROM jobs WHERE workorder_id = $1", created["workorderId"])
    assert await wait_for_jobs(pool, [job_id], timeout=90) == {job_id: "completed"}
    final = (await client.get(f"/workorder/{created['workorderId']}", headers=tenant.bearer)).json()
    assert final["status"] == "completed"
    assert {d["productStatus"] for d in final["productStatusDetails"]} == {"success"}
    assert await pool.fetchval("SELECT count(*) FROM demo.sessions WHERE user_id LIKE 'wo-%'") == 0
    chunks = await pool.fetchval("SELECT count(*) FROM task_chunks WHERE job_id = $1", job_id)
    assert chunks == 3 * 10  # 10 chunks of 10,000 identities for each of the 3 products


@pytest.mark.parametrize("path", ["/workorder", "/public/{key}/jobs"])
async def test_a_list_cursor_that_is_no_id_is_400_not_a_database_error(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    """Found by the schema fuzzer: `after` with a NUL byte reached Postgres (22021) and
    answered 500."""
    url = path.format(key=tenant.project_key)
    for after in ("\x00", "a" * 201):
        answer = await client.get(url, params={"after": after}, headers=tenant.bearer)
        assert answer.status_code == 400, answer.text


async def test_a_large_body_waits_unread_while_the_parse_budget_is_taken(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Found by the bench's roles step (the API at 260 MB with ten 100,000-identity work
    orders posted at once): every upload was read whole before it waited for the budget,
    so the bodies waiting were held in memory, as many as there were clients. Now a body
    is read only once its declared length fits the budget."""
    body = orjson.dumps(order(identities=2_000))
    chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    pulled = 0

    async def upload() -> AsyncIterator[bytes]:
        nonlocal pulled
        for chunk in chunks:
            pulled += 1
            yield chunk

    budget = client._transport.app.state.api.body_budget  # type: ignore[attr-defined]
    async with budget.reserve(budget.total):  # another request's parse, holding all of it
        sent = asyncio.create_task(
            client.post(
                "/workorder",
                content=upload(),
                headers={**headers(tenant), "content-type": "application/json", "content-length": str(len(body))},
            )
        )
        await asyncio.sleep(0.3)
        assert pulled <= 1  # at most what the transport reads to start the request
    answer = await sent
    assert answer.status_code == 200, answer.text
    assert pulled == len(chunks)
    assert answer.json()["operationCount"] == 2_000


async def test_a_body_that_does_not_arrive_in_time_gives_the_budget_back(
    pool: asyncpg.Pool, api_settings: Settings, tenant: Tenant
) -> None:
    """A body is read while it holds its share of the parse budget: one trickling in (or
    never finishing) is refused with 408 after DELETION_API_PARSE_WAIT, and its share is
    free again for the next."""
    settings = api_settings.model_copy(update={"api_parse_wait": 0.5})
    app = create_app(settings, load_products(settings.products_file), pool=pool)
    stalled = asyncio.Event()

    async def never_finishes() -> AsyncIterator[bytes]:
        yield b'{"action": "delete_identity", "identities": ['
        await stalled.wait()  # the rest never comes while the test waits
        yield b"]}"

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        answer = await client.post(
            "/workorder",
            content=never_finishes(),
            headers={**headers(tenant), "content-type": "application/json", "content-length": "1000000"},
        )
        stalled.set()
        assert answer.status_code == 408
        assert answer.json()["error"] == "request_timeout"
        assert app.state.api.body_budget.used == 0
        assert (await client.post("/workorder", json=order(), headers=headers(tenant))).status_code == 200
