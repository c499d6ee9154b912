"""Dispatch against a products file that changed under its jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from tests.support import WorkerHandle, wait_for_jobs
from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings
from worker.store.api_keys import create_key
from worker.store.jobs import NewJob, create_jobs

SESSIONS = '[products.sessions]\nhandler = "postgres"\nnamespaces = ["userId"]\nstatements = ["SELECT $1::text[]"]\n'
EVENTS = SESSIONS.replace("sessions", "events")


async def test_a_product_removed_from_the_file_is_skipped_visibly(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    """Before: intake wrote a product status per product of its own file, dispatch sent
    tasks per product of its own: with `events` gone from dispatch's file (or two files
    during a rollout) the job waited for `events` forever."""
    project_id, project_key = await make_project(org="org-products")
    async with pool.acquire() as connection:
        # Created where the file still named both products.
        created = await create_jobs(
            connection, [NewJob(f"p-{project_id}", project_id, [("userId", "u")])], ["events", "sessions"], None
        )
        api_key = await create_key(connection, "org-products")
    [job_id] = created.values()
    settings = make_settings(SESSIONS)  # the file now: only sessions
    await run_worker(settings)
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    statuses = dict(await pool.fetch("SELECT product, status FROM product_status WHERE job_id = $1", job_id))
    assert statuses == {"events": "skipped", "sessions": "success"}
    errors = await pool.fetchval("SELECT errors FROM jobs WHERE id = $1", job_id)
    assert errors == ["events: skipped: no longer in the products file where the job was dispatched"]
    app = create_app(make_settings(SESSIONS + EVENTS), load_products(settings.products_file), pool=pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as api:
        workorder = await pool.fetchval("SELECT workorder_id FROM jobs WHERE id = $1", job_id)
        view = (await api.get(f"/workorder/{workorder}", headers={"Authorization": f"Bearer {api_key}"})).json()
        job = (
            await api.get(f"/public/{project_key}/jobs/{job_id}", headers={"Authorization": f"Bearer {api_key}"})
        ).json()
    assert {d["productName"]: d["productStatus"] for d in view["productStatusDetails"]} == statuses
    assert job["data"]["errors"] == errors
