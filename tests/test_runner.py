"""The worker process as a whole: health follows what its roles do, a consumer the
broker cancelled comes back, a lost LISTEN connection is made again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import generate_latest

from tests.support import WorkerHandle, job_ids_for, publish, request, wait_for_jobs
from worker.amqp import connect
from worker.cli.health import problems_in
from worker.settings import Settings

PRODUCTS = (
    '[products.sessions]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
    'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
)
MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]
RunWorker = Callable[..., Awaitable[WorkerHandle]]


def health_problems() -> list[str]:
    return problems_in(generate_latest().decode(), 30, time.time())


async def test_a_consumer_the_broker_cancelled_fails_health_and_comes_back(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    """Before: after the acks queue was deleted under a running worker, `health` still
    said healthy and nothing consumed acknowledgements again until a restart."""
    settings = make_settings(PRODUCTS)
    handle = await run_worker(settings)
    assert health_problems() == []
    seen: list[str] = []

    async def watch() -> None:
        # Every 50 ms: a failed session lasts longer than that. Polled every 5 ms, reading
        # the whole metrics registry (hundreds of per-project series late in a full run)
        # took the event loop from the worker it shares, whose new session then never
        # started (seen twice in full runs: it started the moment the watcher stopped).
        while True:
            seen.extend(health_problems())
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    connection = await connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(handle.topology.acks.main)
    finally:
        await connection.close()
    deadline = time.monotonic() + 30
    while not any("consumers active" in problem for problem in seen) or health_problems():
        assert time.monotonic() < deadline, f"health never failed and recovered: {seen[-3:]}"
        await asyncio.sleep(0.05)
    watcher.cancel()
    # The session was made again: the queue is declared anew and consumed, work flows.
    _, key = await make_project()
    deletion = request(key, "after-cancel@example.com")
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}


async def test_a_lost_listen_connection_is_made_again(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    """Before: when the backend of the dispatcher's LISTEN connection died it was never
    replaced, and new jobs waited for the polling interval (up to 769 ms instead of ms)."""
    settings = make_settings(PRODUCTS, dispatch_interval=0.5)
    await run_worker(settings)
    channel = f"{settings.topology_prefix}.due"
    query = "SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()"
    listen = f'LISTEN "{channel}"'
    deadline = time.monotonic() + 30
    while (first := await pool.fetchval(query, listen)) is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", first)
    while await pool.fetchval(query, listen) in (None, first):
        assert time.monotonic() < deadline, "the LISTEN connection was not made again"
        await asyncio.sleep(0.05)
    _, key = await make_project()
    deletion = request(key, "after-listen@example.com")
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
