"""A request's callbackUrls pass the webhook URL rules where the request comes in: a
message with a refused one is dead-lettered with the reason (never the URL), the API
answers 400; an allowed one is stored with the job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from tests.support import WorkerHandle, get_dead_letters, job_ids_for, publish, request
from worker.amqp.topology import ERROR_HEADER
from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings
from worker.store.api_keys import create_key

MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]


async def test_intake_refuses_a_private_callback_url_and_keeps_a_public_one(
    pool: asyncpg.Pool,
    make_settings: MakeSettings,
    make_project: MakeProject,
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    settings = make_settings(webhook_allow_private=False)
    handle = await run_worker(settings)
    _, key = await make_project()
    refused = request(key, "u1", callback_urls=["http://127.0.0.1:8/hook?token=secret-in-url"])
    kept = request(
        key, "u2", callback_urls=["https://hooks.example.com/deletions", "https://hooks.example.com/deletions"]
    )
    await publish(settings, [refused, kept])
    [dead] = await get_dead_letters(settings, handle.topology.requests.dead, 1)
    reason = str((dead.headers or {})[ERROR_HEADER])
    assert reason.startswith("callbackUrls: ")
    assert "secret-in-url" not in reason
    [job_id] = await job_ids_for(pool, [kept.request_id])
    urls = await pool.fetchval("SELECT callback_urls FROM jobs WHERE id = $1", job_id)
    assert urls == ["https://hooks.example.com/deletions"]  # each once


async def test_the_api_refuses_credentials_in_a_callback_url(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject
) -> None:
    settings = make_settings()
    _, key = await make_project(org="org-callbacks")
    async with pool.acquire() as connection:
        api_key = await create_key(connection, "org-callbacks")
    app = create_app(settings, load_products(settings.products_file), pool=pool)
    bearer = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as api:
        refused = await api.delete(
            f"/public/{key}/users/cb-1", params={"callbackUrl": "https://user:pw@hooks.example.com/x"}, headers=bearer
        )
        assert refused.status_code == 400
        assert "pw" not in refused.text
        order = {
            "action": "delete_identity",
            "identities": [{"namespace": {"code": "email"}, "id": "x@example.com"}],
            "callbackUrls": ["https://hooks.example.com/a", "https://hooks.example.com/a"],
        }
        created = await api.post("/workorder", json=order, headers={**bearer, "x-sandbox-name": key})
        assert created.status_code == 200, created.text
    urls = await pool.fetchval("SELECT callback_urls FROM jobs WHERE workorder_id = $1", created.json()["workorderId"])
    assert urls == ["https://hooks.example.com/a"]  # each once
