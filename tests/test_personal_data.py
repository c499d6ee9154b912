"""Identity values never reach a log line or a dead-letter reason, whatever happens to
the request that carried them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from tests.http_product import ProductEndpoint, serve_endpoint
from tests.support import WorkerHandle, get_dead_letters, job_ids_for, publish, publish_raw, request, wait_for_jobs
from worker.amqp.topology import ERROR_HEADER
from worker.settings import Settings

SECRET = "very.private.person@example.com"


async def test_no_identity_value_in_logs_or_dead_letter_reasons(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    async with serve_endpoint(ProductEndpoint(statuses=[503, 422])) as endpoint:
        products = (
            '[products.db]\nhandler = "postgres"\nstatements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
            f'[products.remote]\nhandler = "http"\nurl = "{endpoint.url}"\n'
        )
        settings = make_settings(products)
        with structlog.testing.capture_logs() as events:
            handle = await run_worker(settings)
            _, key = await make_project()
            fine = request(key, SECRET, reference_id="ref-1")
            await publish(settings, [fine])
            identity = {"namespace": {"code": "email"}, "id": SECRET}
            bad = [
                json.dumps({"requestId": "a", "projectKey": key, "identities": [identity], "action": "nope"}).encode(),
                json.dumps({"requestId": "b", "projectKey": "unknown", "identities": [identity]}).encode(),
                json.dumps(
                    {"requestId": "c", "projectKey": key, "identities": [identity] * 3, "startAt": "x"}
                ).encode(),
                json.dumps(
                    {"requestId": "d", "projectKey": key, "identities": [{"namespace": {}, "id": SECRET}]}
                ).encode(),
            ]
            await publish_raw(settings, handle.topology.requests.main, bad)
            dead = await get_dead_letters(settings, handle.topology.requests.dead, len(bad))
            [job_id] = await job_ids_for(pool, [fine.request_id])
            assert await wait_for_jobs(pool, [job_id]) == {job_id: "failed"}  # 503 retried, then 422
    reasons = [str((message.headers or {}).get(ERROR_HEADER)) for message in dead]
    assert len(reasons) == 4
    assert events, "nothing was logged: the test would prove nothing"
    assert {"message_dead_lettered", "message_retry", "task_failed", "jobs_created"} <= {e["event"] for e in events}
    for text in [*reasons, *(repr(event) for event in events)]:
        assert SECRET not in text
    errors = await pool.fetchval("SELECT errors FROM jobs WHERE id = $1", job_id)
    assert SECRET not in json.dumps(errors)
