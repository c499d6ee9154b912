"""`deletion-worker jobs`: list, show, cancel, verify — and never an identity value."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from tests.cli.conftest import Invoke
from tests.support import WorkerHandle, end_job, job_ids_for, publish, request, wait_for_jobs
from worker.settings import Settings
from worker.store.retention import hash_expired_identities

PRODUCTS = (
    '[products.sessions]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
    'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
)


async def test_list_show_cancel_verify(
    invoke: Invoke,
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    settings = make_settings(PRODUCTS)
    await run_worker(settings)
    _, key = await make_project()
    done = request(key, "inspect-me@example.com")
    later = request(key, "not-yet@example.com", start_at=4_102_444_800_000)  # year 2100
    await publish(settings, [done, later])
    done_id, later_id = await job_ids_for(pool, [done.request_id, later.request_id])
    await wait_for_jobs(pool, [done_id])

    listed = await invoke(settings, "jobs", "list", "--project", key, "--json")
    assert listed.exit_code == 0
    assert [row["jobId"] for row in json.loads(listed.output)] == [later_id, done_id]
    only_done = json.loads(
        (await invoke(settings, "jobs", "list", "--status", "completed", "--project", key, "--json")).output
    )
    assert [row["jobId"] for row in only_done] == [done_id]

    shown = await invoke(settings, "jobs", "show", str(done_id), "--json")
    view = json.loads(shown.output)
    assert view["status"] == "completed"
    assert view["identityCount"] == 1
    assert view["products"][0]["product"] == "sessions"
    assert view["products"][0]["chunksSuccess"] == 1
    assert view["products"][0]["tasks"] == 1
    table = await invoke(settings, "jobs", "show", str(done_id))
    for output in (shown.output, table.output, listed.output):
        assert "inspect-me" not in output  # identity values never shown
    assert (await invoke(settings, "jobs", "show", "987654321")).exit_code == 3

    assert (await invoke(settings, "jobs", "cancel", str(later_id))).exit_code == 0
    refused = await invoke(settings, "jobs", "cancel", str(done_id))
    assert refused.exit_code == 4
    assert "completed and can no longer be cancelled" in refused.output
    assert (await invoke(settings, "jobs", "cancel", "987654321")).exit_code == 3

    # verify works before and after the identity is replaced by its keyed hash
    assert (
        await invoke(settings, "jobs", "verify", str(done_id), "--identity", "userId:inspect-me@example.com")
    ).exit_code == 0
    async with pool.acquire() as connection:
        await end_job(connection, done_id, "completed", ago=timedelta(days=30))
        await hash_expired_identities(
            connection, settings.identity_hash_key.get_secret_value().encode(), timedelta(days=7)
        )
    assert await pool.fetchval("SELECT value FROM job_identities WHERE job_id = $1", done_id) is None
    yes = await invoke(settings, "jobs", "verify", str(done_id), "--identity", "userId:inspect-me@example.com")
    assert (yes.exit_code, json.loads(yes.output)) == (0, {"jobId": done_id, "partOfJob": True})
    no = await invoke(settings, "jobs", "verify", str(done_id), "--identity", "userId:someone-else@example.com")
    assert (no.exit_code, json.loads(no.output)) == (3, {"jobId": done_id, "partOfJob": False})
