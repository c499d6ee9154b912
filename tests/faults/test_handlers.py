"""A handler that raises and one slower than its time limit: retried with backoff, then
dead-lettered with the reason; the worker stays up and other products finish."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from tests.faults.services import free_port
from tests.http_product import ProductEndpoint, serve_endpoint
from tests.support import WorkerHandle, consumers_of, get_dead_letters, job_ids_for, publish, request, wait_for_jobs
from worker.amqp.topology import ATTEMPT_HEADER, ERROR_HEADER
from worker.settings import Settings


@pytest.mark.timeout(120)
async def test_raising_and_slow_handlers_end_in_dead_letter_queues(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    async with serve_endpoint(ProductEndpoint(statuses=[200], delay=2.0)) as slow:
        products = f"""
[products.healthy]
handler = "postgres"
namespaces = ["userId", "email"]
statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]

[products.unreachable]
handler = "postgres"
namespaces = ["userId", "email"]
dsn = "postgresql://postgres@127.0.0.1:{free_port()}/postgres"
statements = ["DELETE FROM t WHERE user_id = ANY($1)"]

[products.slow]
handler = "http"
url = "{slow.url}"
secret = "s"
"""
        settings = make_settings(
            products, handler_timeout=0.5, retry_max_attempts=3, retry_base_ms=50, retry_cap_ms=200
        )
        handle = await run_worker(settings)
        _, key = await make_project()
        deletion = request(key, "victim@example.com")
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])

        unreachable = await get_dead_letters(settings, handle.topology.product("unreachable").dead, 1)
        slowest = await get_dead_letters(settings, handle.topology.product("slow").dead, 1)
        reason = str((unreachable[0].headers or {})[ERROR_HEADER])
        assert reason.startswith("retries exhausted after 3 attempts: postgres:")
        assert (unreachable[0].headers or {})[ATTEMPT_HEADER] == 2  # the copy that failed its last try
        assert str((slowest[0].headers or {})[ERROR_HEADER]) == (
            "retries exhausted after 3 attempts: handler time limit exceeded"
        )
        assert len(slow.calls) == 3
        await wait_for_jobs(pool, [job_id], statuses=["running"])
        statuses = dict(await pool.fetch("SELECT product, status FROM product_status WHERE job_id = $1", job_id))
        assert statuses["healthy"] == "success"
        assert statuses["unreachable"] in {"waiting", "running"}  # waits for an operator's replay
        assert not handle.task.done()
        assert sum(role.stats.retried for role in consumers_of(handle.worker)) == 4
