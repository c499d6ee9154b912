"""The notify role end to end: jobs change, the events relay fans their events out into
delivery rows, and the notify role delivers them, signed, to real receivers that verify
every call with `verify_webhook`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import structlog
from pydantic import SecretStr

from tests.support import WorkerHandle, wait_for_jobs
from tests.webhook_receiver import Receiver, serve_receiver, unused_port
from worker.amqp import Publisher
from worker.ops import dlq
from worker.settings import Settings
from worker.store.jobs import NewJob, cancel_job, create_jobs
from worker.store.webhooks import SecretOwner, add_secret, create_subscription
from worker.webhooks.crypto import SecretBox
from worker.webhooks.signing import new_secret

MakeProject = Callable[..., Awaitable[tuple[int, str]]]
RunWorker = Callable[..., Awaitable[WorkerHandle]]

# `sessions` fails for a job deleting the user `boom` (division by zero), `events` never.
FAILS_FOR_BOOM = (
    "DELETE FROM demo.sessions WHERE user_id = ANY($1::text[])"
    " AND 1 / (CASE WHEN 'boom' = ANY($1::text[]) THEN 0 ELSE 1 END) = 1"
)
PRODUCTS = f"""
[products.sessions]
handler = "postgres"
namespaces = ["userId"]
statements = ["{FAILS_FOR_BOOM}"]

[products.events]
handler = "postgres"
namespaces = ["userId"]
statements = ["DELETE FROM demo.events WHERE user_id = ANY($1::text[])"]
"""
FINAL_TYPES = ["job.*", "product.*.success", "product.*.failed", "product.*.cancelled"]
ANY_TYPE = {
    "job.scheduled",
    "job.running",
    "job.completed",
    "job.failed",
    "job.cancelled",
    *(f"product.{p}.{s}" for p in ("sessions", "events") for s in ("running", "success", "failed", "cancelled")),
}


def notify_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_allow_private": True,  # the receivers listen on 127.0.0.1
        "webhook_secret_key": SecretStr("test-key-" + "k" * 32),
        "webhook_interval": 0.05,
        "events_interval": 0.05,
        "webhook_timeout": 2.0,
        "webhook_retry_base_ms": 100,
        "webhook_retry_cap_ms": 400,
        **overrides,
    }
    return make_settings(PRODUCTS, **values)


async def subscribe(pool: asyncpg.Pool, settings: Settings, project_id: int, url: str, types: list[str]) -> str:
    secret = new_secret()
    async with pool.acquire() as connection:
        await create_subscription(connection, project_id, url, types, SecretBox.from_settings(settings).seal(secret))
    return secret


async def new_jobs(
    pool: asyncpg.Pool, handle: WorkerHandle, project_id: int, users: list[str], **fields: Any
) -> list[int]:
    jobs = [NewJob(f"notify-{uuid.uuid4()}", project_id, [("userId", user)], **fields) for user in users]
    async with pool.acquire() as connection:
        created = await create_jobs(connection, jobs, ["sessions", "events"], handle.topology.due_channel)
    return [created[job.key] for job in jobs]


def later() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


async def test_completed_failed_and_cancelled_jobs_call_exactly_the_expected_webhooks(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings], make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = notify_settings(make_settings)
    handle = await run_worker(settings)
    project_id, _ = await make_project()
    async with serve_receiver(Receiver()) as final, serve_receiver(Receiver()) as everything:
        final.secrets = [await subscribe(pool, settings, project_id, final.url, FINAL_TYPES)]
        everything.secrets = [await subscribe(pool, settings, project_id, everything.url, ["*"])]
        with structlog.testing.capture_logs() as logs:
            [completed] = await new_jobs(pool, handle, project_id, ["alice@example.com"])
            await wait_for_jobs(pool, [completed])
            [failed] = await new_jobs(pool, handle, project_id, ["boom"])
            await wait_for_jobs(pool, [failed])
            [cancelled] = await new_jobs(pool, handle, project_id, ["carol@example.com"], start_at=later())
            async with pool.acquire() as connection:
                await cancel_job(connection, cancelled, project_id)
            await final.wait_for(5, completed)
            await final.wait_for(5, failed)
            await final.wait_for(4, cancelled)
            await asyncio.sleep(1.0)  # time for anything unexpected to arrive too

    assert (await pool.fetchval("SELECT status FROM jobs WHERE id = $1", failed)) == "failed"
    assert final.types_of_job(completed) == sorted(
        ["job.scheduled", "job.running", "job.completed", "product.sessions.success", "product.events.success"]
    )
    assert final.types_of_job(failed) == sorted(
        ["job.scheduled", "job.running", "job.failed", "product.sessions.failed", "product.events.success"]
    )
    assert final.types_of_job(cancelled) == sorted(
        ["job.scheduled", "job.cancelled", "product.sessions.cancelled", "product.events.cancelled"]
    )
    for job in (completed, failed, cancelled):
        assert set(everything.types_of_job(job)) <= ANY_TYPE
        assert set(final.types_of_job(job)) <= set(everything.types_of_job(job))
    [failure] = [e for e in final.of_job(failed) if e["type"] == "product.sessions.failed"]
    assert failure["error"]
    assert "boom" not in str(final.events)  # events never carry identity values
    assert final.rejected == everything.rejected == 0
    text = repr(logs)
    assert "webhook" in text  # the role logged
    assert all(secret not in text for secret in final.secrets + everything.secrets)
    assert not await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE project_id = $1", project_id)


async def test_an_endpoint_answering_500_for_a_while_gets_the_event_later(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings], make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = notify_settings(make_settings)
    handle = await run_worker(settings)
    project_id, _ = await make_project()
    async with serve_receiver(Receiver(statuses=[500, 503, 500, 200])) as flaky:
        flaky.secrets = [await subscribe(pool, settings, project_id, flaky.url, ["job.cancelled"])]
        [job] = await new_jobs(pool, handle, project_id, ["u1"], start_at=later())
        async with pool.acquire() as connection:
            await cancel_job(connection, job, project_id)
        await flaky.wait_for(1, job)
    assert flaky.calls == 4
    assert flaky.types_of_job(job) == ["job.cancelled"]
    # The same event each time: one id, the receiver deduplicates by it.
    assert len({body for body, _ in flaky.raw}) == 1


async def test_a_dead_or_silent_endpoint_does_not_delay_a_healthy_one(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings], make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = notify_settings(make_settings, webhook_timeout=3.0, webhook_per_endpoint=2, webhook_concurrency=8)
    project_id, _ = await make_project()
    async with (
        serve_receiver(Receiver(hang_until=time.monotonic() + 600)) as silent,
        serve_receiver(Receiver()) as healthy,
    ):
        # The stuck endpoints' subscriptions come first: their rows are the oldest.
        await subscribe(pool, settings, project_id, silent.url, ["job.*"])
        await subscribe(pool, settings, project_id, f"http://127.0.0.1:{unused_port()}/refused", ["job.*"])
        healthy.secrets = [await subscribe(pool, settings, project_id, healthy.url, ["job.*"])]
        handle = await run_worker(settings)
        jobs = await new_jobs(pool, handle, project_id, [f"u{i}" for i in range(30)], start_at=later())
        async with pool.acquire() as connection:
            for job in jobs:
                await cancel_job(connection, job, project_id)
        started = time.monotonic()
        await healthy.wait_for(60, timeout=20)  # scheduled and cancelled, for each of 30 jobs
        took = time.monotonic() - started
        # Draining the silent endpoint alone would take 60 / 2 slots x 3 s = 90 s.
        assert took < 8, took
        assert silent.calls <= 2 * 3  # never more than its own slots (a few rounds at most)
        owed = await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id"
            " WHERE s.project_id = $1 AND s.url <> $2",
            project_id,
            healthy.url,
        )
        assert owed >= 100  # the stuck endpoints' rows wait for them, on their own


async def test_410_removes_the_subscription(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings], make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = notify_settings(make_settings)
    handle = await run_worker(settings)
    project_id, _ = await make_project()
    async with serve_receiver(Receiver(statuses=[410])) as gone:
        gone.secrets = [await subscribe(pool, settings, project_id, gone.url, ["job.*"])]
        jobs = await new_jobs(pool, handle, project_id, ["a", "b"], start_at=later())
        deadline = time.monotonic() + 20
        while await pool.fetchval("SELECT count(*) FROM webhook_subscriptions WHERE project_id = $1", project_id):
            assert time.monotonic() < deadline, "the subscription was not removed"
            await asyncio.sleep(0.05)
        calls = gone.calls
        async with pool.acquire() as connection:
            for job in jobs:
                await cancel_job(connection, job, project_id)
        await asyncio.sleep(1.0)
    assert calls >= 1
    assert gone.calls == calls  # nothing more was sent there
    assert not await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE project_id = $1", project_id)


async def _dead_letters(settings: Settings, handle: WorkerHandle, expected: int) -> list[dlq.DeadMessage]:
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        deadline = time.monotonic() + 30
        while True:
            found = await dlq.list_dead(channel, [handle.topology.webhooks.dead])
            if len(found) >= expected or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def _replay(settings: Settings, handle: WorkerHandle) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        publisher = await Publisher.open(connection)
        return await dlq.replay_dead(channel, publisher, [handle.topology.webhooks.dead])
    finally:
        await connection.close()


async def test_given_up_deliveries_go_to_the_dead_letter_queue_and_replay_delivers_them(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings], make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = notify_settings(make_settings, webhook_give_up=timedelta(seconds=2))
    handle = await run_worker(settings)
    project_id, _ = await make_project()
    async with serve_receiver(Receiver(statuses=[500])) as down:
        down.secrets = [await subscribe(pool, settings, project_id, down.url, ["job.cancelled"])]
        [job] = await new_jobs(pool, handle, project_id, ["late"], start_at=later())
        async with pool.acquire() as connection:
            await cancel_job(connection, job, project_id)
        [dead] = await _dead_letters(settings, handle, 1)
        assert dead.reason.startswith("gave up")
        assert dead.origin == handle.topology.webhooks.main
        assert dead.identity_count is None
        assert not down.events
        assert not await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE project_id = $1", project_id)

        down.statuses = [200]  # the receiver is fixed
        assert await _replay(settings, handle) == 1
        await down.wait_for(1, job)
    assert down.types_of_job(job) == ["job.cancelled"]


async def test_callbacks_of_a_project_without_a_callback_secret_wait_in_the_dead_letter_queue(
    pool: asyncpg.Pool, make_settings: Callable[..., Settings], make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = notify_settings(make_settings)
    handle = await run_worker(settings)
    project_id, _ = await make_project()
    async with serve_receiver(Receiver()) as callback:
        [job] = await new_jobs(
            pool, handle, project_id, ["cb"], start_at=later(), callback_urls=(callback.url + "?job=mine",)
        )
        async with pool.acquire() as connection:
            await cancel_job(connection, job, project_id)
        dead = await _dead_letters(settings, handle, 4)  # scheduled, cancelled, and each product's cancelled
        assert len(dead) == 4
        assert {item.reason for item in dead} == {item.reason for item in dead[:1]}
        assert "callback-secret" in dead[0].reason
        assert callback.calls == 0

        secret = new_secret()
        async with pool.acquire() as connection:
            await add_secret(
                connection,
                SecretOwner(callback_project_id=project_id),
                SecretBox.from_settings(settings).seal(secret),
                timedelta(hours=1),
            )
        callback.secrets = [secret]
        assert await _replay(settings, handle) == 4
        await callback.wait_for(4, job)
    assert callback.types_of_job(job) == sorted(
        ["job.scheduled", "job.cancelled", "product.sessions.cancelled", "product.events.cancelled"]
    )
    assert callback.rejected == 0
