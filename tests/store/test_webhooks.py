"""Webhook rows: the fan-out makes each (event, target) once; a round takes a few rows of
every endpoint, so a dead endpoint's backlog never starves another; rotations keep two
secrets at most."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from worker.store.jobs import NewJob, create_jobs
from worker.store.webhook_deliveries import Retry, claim, settle
from worker.store.webhook_fanout import enqueue_deliveries
from worker.store.webhooks import SecretOwner, add_secret, create_subscription, retire_old_secrets, secret_status

MakeProject = Callable[..., Awaitable[tuple[int, str]]]


def event(project_key: str, job_id: int, event_type: str) -> dict[str, object]:
    return {"eventId": str(uuid.uuid4()), "type": event_type, "projectKey": project_key, "jobId": job_id}


async def test_each_event_reaches_each_matching_target_once(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    project_id, key = await make_project()
    async with pool.acquire() as connection:
        jobs = await create_jobs(
            connection,
            [NewJob(f"wh-{uuid.uuid4()}", project_id, [("userId", "u")], callback_urls=("https://cb.example/a",))],
            ["p"],
            None,
        )
        job_id = next(iter(jobs.values()))
        subscriptions = {}
        for name, types in {
            "all": ["*"],
            "jobs": ["job.*"],
            "failures": ["product.*.failed", "job.failed"],
            "exact": ["product.crm_db.success"],
        }.items():
            created = await create_subscription(connection, project_id, f"https://{name}.example/h", types, b"x")
            subscriptions[created.id] = name
        events = [
            event(key, job_id, "job.running"),
            event(key, job_id, "product.crm_db.success"),
            event(key, job_id, "product.crmxdb.failed"),
            event(key, job_id, "job.failed"),
        ]
        await enqueue_deliveries(connection, events)
        await enqueue_deliveries(connection, events)  # relayed twice: no second row
        rows = await connection.fetch(
            "SELECT event->>'type' AS type, subscription_id, url, endpoint"
            " FROM webhook_deliveries WHERE project_id = $1",
            project_id,
        )
    got = sorted((row["type"], subscriptions.get(row["subscription_id"], row["url"])) for row in rows)
    assert got == sorted(
        [
            *((e["type"], "all") for e in events),
            *((e["type"], "https://cb.example/a") for e in events),  # a callback gets every event of its job
            ("job.running", "jobs"),
            ("job.failed", "jobs"),
            ("product.crmxdb.failed", "failures"),
            ("job.failed", "failures"),
            ("product.crm_db.success", "exact"),
        ]
    )
    assert {row["endpoint"] for row in rows if row["subscription_id"] is None} == {"https://cb.example"}


async def test_a_dead_endpoints_backlog_does_not_starve_another(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    project_id, key = await make_project()
    dead, healthy = f"http://dead-{uuid.uuid4().hex[:8]}.test", f"http://ok-{uuid.uuid4().hex[:8]}.test"
    async with pool.acquire() as connection:
        dead_hook = await create_subscription(connection, project_id, f"{dead}/h", ["*"], b"x")
        await enqueue_deliveries(connection, [event(key, 1, "job.running") for _ in range(300)])
        healthy_hook = await create_subscription(connection, project_id, f"{healthy}/h", ["*"], b"x")
        late = event(key, 1, "job.completed")
        await enqueue_deliveries(connection, [late])  # the dead endpoint gets it too: 301 rows
        mine = {dead, healthy}

        claimed = await claim(connection, limit=100, per_endpoint=4, busy={}, lease_seconds=60)
        by_endpoint = {e: [d for d in claimed if d.endpoint == e] for e in mine}
        assert len(by_endpoint[dead]) == 4  # a few of its oldest, not a hundred
        assert [d.subscription_id for d in by_endpoint[healthy]] == [healthy_hook.id]
        assert by_endpoint[healthy][0].event_id == late["eventId"]
        assert all(d.sealed_secrets == [b"x"] for d in by_endpoint[dead])

        # Endpoints this process keeps busy are left to other processes.
        again = await claim(connection, limit=100, per_endpoint=4, busy={dead: 4}, lease_seconds=60)
        assert not [d for d in again if d.endpoint in mine]

        # The dead endpoint's calls fail: it backs off, and is not taken until then.
        await settle(
            connection,
            delivered=by_endpoint[healthy],
            retries=[Retry(d.id, d.endpoint, 0.0, "answered 500") for d in by_endpoint[dead]],
            removed=[],
            endpoint_backoff=(30.0, 60.0),
        )
        later = await claim(connection, limit=100, per_endpoint=4, busy={}, lease_seconds=60)
        assert not [d for d in later if d.endpoint in mine]
        state = await connection.fetchrow(
            "SELECT failures, next_attempt_at > now() + interval '10 seconds' AS backing_off"
            " FROM webhook_endpoints WHERE endpoint = $1",
            dead,
        )
        assert state is not None
        assert (state["failures"], state["backing_off"]) == (1, True)
        left = await connection.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1", dead_hook.id
        )
        assert left == 301
        assert not await connection.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1", healthy_hook.id
        )


async def test_a_rotation_keeps_two_secrets_at_most(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    project_id, _ = await make_project()
    owner = SecretOwner(callback_project_id=project_id)
    async with pool.acquire() as connection:
        assert await secret_status(connection, owner) == (0, None)
        await add_secret(connection, owner, b"one", timedelta(hours=24))
        assert (await secret_status(connection, owner))[0] == 1
        await add_secret(connection, owner, b"two", timedelta(hours=24))
        active, ends = await secret_status(connection, owner)
        assert active == 2
        assert ends is not None
        await add_secret(connection, owner, b"three", timedelta(hours=24))
        assert (await secret_status(connection, owner))[0] == 2  # `one` ended at once
        assert await retire_old_secrets(connection, owner) == 1
        assert await secret_status(connection, owner) == (1, None)
