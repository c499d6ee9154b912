"""Two organizations side by side, colliding on everything they can choose: request ids,
Idempotency-Keys, user ids. Neither can see, change or swallow the other's requests,
and a key reused for another request is refused, never answered with the old job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
from starlette.requests import Request

from tests.api.conftest import Tenant
from tests.support import WorkerHandle, job_ids_for, publish, request, wait_for_jobs
from worker.api.routes_jobs import user_id_of
from worker.settings import Settings
from worker.store.jobs import NewJob, create_jobs

KEY = {"Idempotency-Key": "same-key-everywhere"}
MakeTenant = Callable[[str], Awaitable[Tenant]]


def order(*emails: str) -> dict[str, object]:
    return {
        "action": "delete_identity",
        "identities": [{"namespace": {"code": "email"}, "id": email} for email in emails],
    }


async def test_an_idempotency_key_reused_for_another_user_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Before: the second call (bob) answered 200 with alice's job, and bob's rows stayed."""
    base = f"/public/{tenant.project_key}/users"
    alice = await client.delete(f"{base}/alice@example.com", headers={**tenant.bearer, **KEY})
    again = await client.delete(f"{base}/alice@example.com", headers={**tenant.bearer, **KEY})
    bob = await client.delete(f"{base}/bob@example.com", headers={**tenant.bearer, **KEY})
    assert alice.status_code == again.status_code == 200
    assert again.json()["data"]["jobId"] == alice.json()["data"]["jobId"]  # a retry: the same job
    assert bob.status_code == 422
    assert bob.json()["error"] == "conflict"
    assert "Idempotency-Key" in bob.json()["message"]
    assert "bob@example.com" not in bob.text
    # The older form shares the Jobs API's keys: the same request is the same job.
    legacy = await client.delete(
        f"/api/v1/{tenant.project_key}/users/alice@example.com", headers={**tenant.bare, **KEY}
    )
    assert legacy.json()["data"]["jobId"] == alice.json()["data"]["jobId"]
    # Another startAt is another request.
    later = await client.delete(f"{base}/alice@example.com?startAt=4102444800000", headers={**tenant.bearer, **KEY})
    assert later.status_code == 422


async def test_work_orders_have_their_own_keys(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Before: a work order for carol with a key the Jobs API had used returned alice's job."""
    headers = {**tenant.bearer, **KEY, "x-sandbox-name": tenant.project_key}
    user = await client.delete(
        f"/public/{tenant.project_key}/users/alice@example.com", headers={**tenant.bearer, **KEY}
    )
    carol = await client.post("/workorder", json=order("carol@example.com"), headers=headers)
    assert carol.status_code == 200
    assert carol.json()["operationCount"] == 1
    retried = await client.post("/workorder", json=order("carol@example.com"), headers=headers)
    assert retried.json()["workorderId"] == carol.json()["workorderId"]
    other = await client.post("/workorder", json=order("dave@example.com"), headers=headers)
    assert other.status_code == 422
    user_job = await client.get(
        f"/public/{tenant.project_key}/jobs/{user.json()['data']['jobId']}", headers=tenant.bearer
    )
    assert user_job.json()["data"]["referenceId"] == "alice@example.com"


async def test_the_same_key_in_two_organizations_is_two_requests(
    client: httpx.AsyncClient, tenant: Tenant, stranger: Tenant
) -> None:
    mine = await client.delete(f"/public/{tenant.project_key}/users/u1", headers={**tenant.bearer, **KEY})
    theirs = await client.delete(f"/public/{stranger.project_key}/users/u1", headers={**stranger.bearer, **KEY})
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["data"]["jobId"] != theirs.json()["data"]["jobId"]


ROUTES = [
    ("GET", "/public/{project}/jobs/{job}", None),
    ("DELETE", "/public/{project}/jobs/{job}", None),
    ("GET", "/public/{project}/jobs", None),
    ("DELETE", "/public/{project}/users/someone", None),
    ("GET", "/workorder/{workorder}", None),
    ("PUT", "/workorder/{workorder}", {"displayName": "mine now"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_answers_404_for_another_organizations_things(
    client: httpx.AsyncClient, tenant: Tenant, stranger: Tenant, method: str, path: str, body: object
) -> None:
    created = await client.post(
        "/workorder",
        json=order("victim@example.com"),
        headers={**stranger.bearer, "x-sandbox-name": stranger.project_key},
    )
    theirs = created.json()
    job_id = (await client.get(f"/public/{stranger.project_key}/jobs", headers=stranger.bearer)).json()["data"][0][
        "jobId"
    ]
    url = path.format(project=stranger.project_key, job=job_id, workorder=theirs["workorderId"])
    answer = await client.request(method, url, headers=tenant.bearer, json=body)
    assert answer.status_code == 404, answer.text
    assert "victim" not in answer.text
    # Their work order is untouched, and not in anyone else's list.
    still = await client.get(f"/workorder/{theirs['workorderId']}", headers=stranger.bearer)
    assert still.json()["status"] in {"received", "processing", "completed"}
    assert still.json()["displayName"] == ""
    listed = await client.get("/workorder", headers=tenant.bearer)
    assert theirs["workorderId"] not in listed.text


async def test_user_ids_with_a_slash_and_undecodable_ones(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Before: /users/tenant%2F123 answered 404 (no such route), and %ff%fe created a job
    for U+FFFD U+FFFD, another user."""
    base = f"/public/{tenant.project_key}/users"
    slash = await client.delete(f"{base}/tenant%2F123", headers=tenant.bearer)
    assert slash.status_code == 200
    assert slash.json()["data"]["referenceId"] == "tenant/123"
    spaced = await client.delete(f"{base}/J%C3%BCrgen%20M.", headers=tenant.bearer)
    assert spaced.json()["data"]["referenceId"] == "Jürgen M."
    broken = await client.delete(f"{base}/%ff%fe", headers=tenant.bearer)
    assert broken.status_code == 400
    assert "UTF-8" in broken.json()["message"]
    too_long = await client.delete(f"{base}/{'x' * 1025}", headers=tenant.bearer)
    assert too_long.status_code == 400


def test_the_user_id_is_found_wherever_the_api_is_mounted() -> None:
    """Found in review: the id was cut from the raw path by position, so behind a proxy's
    prefix `/x/public/P/users/alice` meant the user `users/alice`."""
    for raw in (b"/public/P1/users/tenant%2F1", b"/under/a/proxy/public/P1/users/tenant%2F1?startAt=1"):
        scope: dict[str, Any] = {
            "type": "http",
            "method": "DELETE",
            "path": raw.decode(),
            "raw_path": raw,
            "headers": [],
        }
        assert user_id_of(Request(scope), "P1") == "tenant/1"


async def test_a_request_id_used_by_two_projects_is_two_jobs(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    """Before: request ids were unique across all projects; dave's request (project P1)
    with the id of one of P2 was acked and silently dropped, his rows stayed."""
    settings = make_settings(
        '[products.sessions]\nhandler = "postgres"\nnamespaces = ["userId"]\n'
        'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
    )
    first_id, first_key = await make_project(org="org-one")
    second_id, second_key = await make_project(org="org-two")
    for_first = request(first_key, "erin", request_id="shared-request-id")
    for_second = request(second_key, "dave", request_id="shared-request-id")
    with structlog.testing.capture_logs() as logs:
        await run_worker(settings)
        await publish(settings, [for_first])
        [first_job] = await job_ids_for(pool, [for_first.request_id])
        await publish(settings, [for_second])
        for _ in range(600):
            rows = await pool.fetch("SELECT id, project_id FROM jobs WHERE request_id = 'shared-request-id'")
            if len(rows) == 2:
                break
            await asyncio.sleep(0.05)
        await publish(settings, [for_second])  # a true duplicate: recognised, and said so
        for _ in range(600):
            if any(entry["event"] == "duplicate_requests" for entry in logs):
                break
            await asyncio.sleep(0.05)
    assert sorted(row["project_id"] for row in rows) == sorted([first_id, second_id])
    assert set((await wait_for_jobs(pool, [row["id"] for row in rows])).values()) == {"completed"}
    assert first_job in {row["id"] for row in rows}
    [duplicate] = [entry for entry in logs if entry["event"] == "duplicate_requests"]
    assert duplicate["count"] == 1
    assert duplicate["project_ids"] == [second_id]
    assert "dave" not in repr(duplicate)


async def test_a_key_the_previous_release_stored_is_honoured_only_for_the_same_request(
    client: httpx.AsyncClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The previous release kept a key in the job's request id (api:<project>:<key>), for
    both route families, with no fingerprint (found in review: it answered any request)."""
    async with pool.acquire() as connection:
        [legacy] = (
            await create_jobs(
                connection,
                [
                    NewJob(
                        f"api:{tenant.project_id}:old-key",
                        tenant.project_id,
                        [("userId", "alice")],
                        reference_id="alice",
                    )
                ],
                [],
                None,
            )
        ).values()
    headers = {**tenant.bearer, "Idempotency-Key": "old-key"}
    same = await client.delete(f"/public/{tenant.project_key}/users/alice", headers=headers)
    assert same.json()["data"]["jobId"] == legacy
    other = await client.delete(
        f"/public/{tenant.project_key}/users/bob", headers={**tenant.bearer, "Idempotency-Key": "old-key"}
    )
    assert other.status_code == 422
