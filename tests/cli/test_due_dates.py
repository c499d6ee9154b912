"""Due dates through the API (Jobs API and work orders) and `jobs list --overdue /
--due-within`, `jobs show`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.cli.conftest import Invoke
from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings
from worker.store.api_keys import create_key

MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]
PARKED = 4_102_444_800_000  # startAt in 2100: the jobs stay scheduled


async def test_api_and_cli_show_due_dates(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, invoke: Invoke
) -> None:
    settings = make_settings()
    _, key = await make_project(org="org-due")
    async with pool.acquire() as connection:
        api_key = await create_key(connection, "org-due")
    app = create_app(settings, load_products(settings.products_file), pool=pool)
    bearer = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as api:
        past = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)
        job = (
            await api.delete(f"/public/{key}/users/due-1", params={"dueAt": past, "startAt": PARKED}, headers=bearer)
        ).json()
        assert job["data"]["dueAt"] == past
        gdpr = (await api.delete(f"/public/{key}/users/due-2", params={"regulation": "gdpr"}, headers=bearer)).json()
        assert gdpr["data"]["regulation"] == "gdpr"
        assert gdpr["data"]["dueAt"] - gdpr["data"]["createdAt"] == pytest.approx(30 * 86_400_000, abs=5000)
        wrong = await api.delete(f"/public/{key}/users/due-3", params={"regulation": "hipaa"}, headers=bearer)
        assert wrong.status_code == 400
        order = {
            "action": "delete_identity",
            "identities": [{"namespace": {"code": "email"}, "id": "x@example.com"}],
            "regulation": "ccpa",
            "dueAt": "2030-01-02T03:04:05Z",
        }
        created = await api.post("/workorder", json=order, headers={**bearer, "x-sandbox-name": key})
        assert created.status_code == 200, created.text
        assert (created.json()["regulation"], created.json()["dueAt"]) == ("ccpa", "2030-01-02T03:04:05.000000Z")
        shown = (await api.get(f"/workorder/{created.json()['workorderId']}", headers=bearer)).json()
        assert shown["dueAt"] == "2030-01-02T03:04:05.000000Z"

    overdue = await invoke(settings, "jobs", "list", "--project", key, "--overdue", "--json")
    assert [row["jobId"] for row in json.loads(overdue.output)] == [job["data"]["jobId"]]
    within = await invoke(settings, "jobs", "list", "--project", key, "--due-within", "45d", "--json")
    assert [row["jobId"] for row in json.loads(within.output)] == [job["data"]["jobId"], gdpr["data"]["jobId"]]
    bad = await invoke(settings, "jobs", "list", "--due-within", "soon")
    assert bad.exit_code == 2
    shown_cli = json.loads((await invoke(settings, "jobs", "show", str(gdpr["data"]["jobId"]), "--json")).output)
    assert shown_cli["regulation"] == "gdpr"
    assert shown_cli["dueAt"] is not None
