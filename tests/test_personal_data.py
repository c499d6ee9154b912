"""Identity values never reach a log line or a dead-letter reason, whatever happens to
the request that carried them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import httpx
import structlog

from tests.http_product import ProductEndpoint, serve_endpoint
from tests.support import (
    WorkerHandle,
    get_all,
    get_dead_letters,
    job_ids_for,
    publish,
    publish_raw,
    queue_depth,
    request,
    wait_for_jobs,
)
from worker.amqp.topology import ERROR_HEADER
from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings
from worker.store.api_keys import create_key

SECRET = "very.private.person@example.com"


async def test_no_identity_value_in_logs_or_dead_letter_reasons(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    async with serve_endpoint(ProductEndpoint(statuses=[503, 422])) as endpoint:
        products = (
            '[products.db]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
            'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
            f'[products.remote]\nhandler = "http"\nurl = "{endpoint.url}"\nsecret = "s"\n'
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


async def test_after_retention_no_table_queue_log_or_answer_holds_an_identity_value(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    """Before: hashing left jobs.reference_id and the description ("Delete user sessions of
    userId = alice@…"), served by GET /public/…/jobs/N, and dead-letter queues kept full
    identity lists with no expiry."""
    secrets = {
        "amqp": "amqp.person@example.com",
        "user": "jobs.api.person@example.com",
        "order": "work.order.person@example.com",
        "dead": "dead.letter.person@example.com",
    }
    settings = make_settings(
        '[products.db]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
        'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n',
        identity_retention=timedelta(0),
        dead_letter_retention=timedelta(seconds=2),
        maintenance_interval=0.2,
    )
    org = f"org-pd-{uuid.uuid4().hex[:6]}"
    _, project_key = await make_project(org=org)
    async with pool.acquire() as connection:
        api_key = await create_key(connection, org)
    app = create_app(settings, load_products(settings.products_file), pool=pool)
    headers = {"Authorization": f"Bearer {api_key}"}
    with structlog.testing.capture_logs() as events:
        handle = await run_worker(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as api:
            by_amqp = request(
                project_key,
                secrets["amqp"],
                namespace="email",
                reference_id=secrets["amqp"],
                description=f"erase {secrets['amqp']} (ticket 7)",
                display_name=secrets["amqp"],
            )
            await publish(settings, [by_amqp])
            user = await api.delete(f"/public/{project_key}/users/{secrets['user']}", headers=headers)
            order = await api.post(
                "/workorder",
                json={"action": "delete_identity", "description": f"for {secrets['order']}",
                      "identities": [{"namespace": {"code": "email"}, "id": secrets["order"]}]},
                headers={**headers, "x-sandbox-name": project_key},
            )  # fmt: skip
            dead = {
                "requestId": "x",
                "projectKey": "nobody",
                "identities": [{"namespace": {"code": "email"}, "id": secrets["dead"]}],
            }
            await publish_raw(settings, handle.topology.requests.main, [json.dumps(dead).encode()])
            [amqp_job] = await job_ids_for(pool, [by_amqp.request_id])
            job_ids = [amqp_job, user.json()["data"]["jobId"], await pool.fetchval(
                "SELECT id FROM jobs WHERE workorder_id = $1", order.json()["workorderId"])]  # fmt: skip
            assert set((await wait_for_jobs(pool, job_ids)).values()) == {"completed"}
            for _ in range(400):
                hashed = await pool.fetchval(
                    "SELECT count(*) FROM jobs WHERE id = ANY($1) AND identities_hashed_at IS NOT NULL", job_ids
                )
                dead_left, _ = await queue_depth(settings, handle.topology.requests.dead)
                if hashed == 3 and dead_left == 0:
                    break
                await asyncio.sleep(0.05)
            answers = [
                (await api.get(f"/public/{project_key}/jobs/{job_id}", headers=headers)).text for job_id in job_ids
            ]
            answers.append((await api.get(f"/public/{project_key}/jobs", headers=headers)).text)
            answers.append((await api.get(f"/workorder/{order.json()['workorderId']}", headers=headers)).text)
            answers.append((await api.get("/workorder", headers=headers)).text)
    assert hashed == 3
    assert dead_left == 0  # the dead letter expired with the retention
    # The Jobs API shows the keyed hash where the user id was.
    shown = json.loads(answers[1])["data"]
    assert shown["referenceId"].startswith("hmac:")
    assert shown["description"] == f"Delete user sessions of userId = {shown['referenceId']}"
    found = []
    for name, value in secrets.items():
        for table in await pool.fetch(
            "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables"
            " WHERE table_schema IN ('public', 'demo') AND table_type = 'BASE TABLE'"
        ):
            rows = await pool.fetchval(
                f"SELECT count(*) FROM {table['t']} x WHERE x::text LIKE '%' || $1 || '%'", value
            )
            if rows:
                found.append(f"{name} in {table['t']}")
        for queue in handle.topology.all_queue_names():
            found += [f"{name} in {queue}" for message in await get_all(settings, queue) if value in message]
        found += [f"{name} in an answer" for answer in answers if value in answer]
        found += [f"{name} in a log line" for event in events if value in repr(event)]
    assert found == []
