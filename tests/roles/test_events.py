"""Lifecycle events: every committed status change, and only those, reaches the events
exchange, with the body schemas.events describes and no identity value."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import aio_pika
import asyncpg
import pytest

from schemas import DeletionRequest
from schemas.events import LifecycleEvent
from tests.fakes import FakePublisher
from tests.support import WorkerHandle, job_ids_for, publish, request, wait_for_jobs
from worker.amqp import ConsumerChannel, Publisher, Topology
from worker.roles.base import Session
from worker.roles.events import EventRelayRole
from worker.settings import Settings
from worker.store.events import claim, relayed
from worker.store.jobs import NewJob, cancel_job, create_jobs

MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]
RunWorker = Callable[..., Awaitable[WorkerHandle]]

PRODUCTS = """
[products.sessions]
handler = "postgres"
namespaces = ["userId"]
statements = ["SELECT $1::text[]"]
"""
BROKEN = """
[products.broken]
handler = "postgres"
namespaces = ["userId"]
statements = ["DELETE FROM demo.no_such_table WHERE user_id = ANY($1::text[])"]
"""


class EventCollector:
    """A queue of the test's own bound to a deployment's events exchange (`#`)."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.seen: dict[str, LifecycleEvent] = {}
        self.raw: list[bytes] = []

    async def _take(self) -> bool:
        message = await self.queue.get(fail=False, no_ack=True)
        if message is None:
            return False
        self.raw.append(message.body)
        event = LifecycleEvent.model_validate_json(message.body)
        assert message.routing_key == event.type
        assert message.message_id == event.event_id
        self.seen[event.event_id] = event  # deduplicated by id, as a subscriber would
        return True

    async def of(self, job_id: int, wanted: set[str]) -> list[LifecycleEvent]:
        """The job's events, in the order they happened, once the wanted types arrived
        (and whatever followed them within half a second)."""
        deadline = asyncio.get_running_loop().time() + 30
        while not wanted <= {e.type for e in self.seen.values() if e.job_id == job_id}:
            assert asyncio.get_running_loop().time() < deadline, f"missing {wanted} in {list(self.seen.values())}"
            if not await self._take():
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        while await self._take():
            pass
        return sorted((e for e in self.seen.values() if e.job_id == job_id), key=lambda e: e.occurred_at)


@pytest.fixture
async def subscribe(
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> AsyncIterator[Callable[[Settings], Awaitable[EventCollector]]]:
    queues: list[aio_pika.abc.AbstractQueue] = []

    async def bind(settings: Settings) -> EventCollector:
        exchange = await amqp_channel.declare_exchange(
            f"{settings.topology_prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await amqp_channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        queues.append(queue)
        return EventCollector(queue)

    yield bind
    for queue in queues:
        with contextlib.suppress(Exception):
            await queue.delete(if_unused=False, if_empty=False)


@dataclass(frozen=True)
class Deployment:
    settings: Settings
    collector: EventCollector
    project_key: str


@pytest.fixture
async def deploy(
    pool: asyncpg.Pool,
    make_settings: MakeSettings,
    make_project: MakeProject,
    run_worker: RunWorker,
    subscribe: Callable[[Settings], Awaitable[EventCollector]],
) -> Callable[..., Awaitable[Deployment]]:
    """A worker with these products, a subscriber to its events, a project."""

    async def start(products: str, org: str = "org-test") -> Deployment:
        # The session database's outbox may hold thousands of earlier tests' events, which
        # the relay would publish before this test's (and the collector would time out).
        await pool.execute("DELETE FROM event_outbox")
        settings = make_settings(products)
        collector = await subscribe(settings)
        await run_worker(settings)
        _, key = await make_project(org=org)
        return Deployment(settings, collector, key)

    return start


async def submit(pool: asyncpg.Pool, deployment: Deployment, deletion: DeletionRequest) -> int:
    await publish(deployment.settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    return job_id


async def test_a_completed_job_tells_every_step_once(
    pool: asyncpg.Pool, deploy: Callable[..., Awaitable[Deployment]]
) -> None:
    deployment = await deploy(PRODUCTS, org="org-events")
    key, collector = deployment.project_key, deployment.collector
    user = f"person-{uuid.uuid4()}@example.com"
    deletion = request(key, user, reference_id=user)
    job_id = await submit(pool, deployment, deletion)
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}

    events = await collector.of(job_id, {"job.scheduled", "job.running", "product.sessions.success", "job.completed"})
    assert [e.type for e in events] == ["job.scheduled", "job.running", "product.sessions.success", "job.completed"]
    job = await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert job is not None
    for event in events:
        assert (event.request_id, event.workorder_id, event.bundle_id) == (
            deletion.request_id,
            job["workorder_id"],
            job["bundle_id"],
        )
        assert (event.project_key, event.organization) == (key, "org-events")
    assert events[0].products is None  # made before the job's products were written
    assert events[2].product == "sessions"
    assert events[2].products == {"sessions": "success"}
    assert events[3].status == events[3].job_status == "completed"
    assert not any(user.encode() in body for body in collector.raw)


async def test_a_failed_product_and_its_job_carry_the_error(
    pool: asyncpg.Pool, deploy: Callable[..., Awaitable[Deployment]]
) -> None:
    deployment = await deploy(PRODUCTS + BROKEN)
    job_id = await submit(pool, deployment, request(deployment.project_key, "someone"))
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "failed"}

    events = await deployment.collector.of(job_id, {"product.broken.failed", "product.sessions.success", "job.failed"})
    by_type = {e.type: e for e in events}
    assert set(by_type) == {
        "job.scheduled",
        "job.running",
        "product.sessions.success",
        "product.broken.failed",
        "job.failed",
    }
    assert by_type["product.broken.failed"].error == "postgres: database error 42P01 (UndefinedTableError)"
    assert by_type["job.failed"].error == "broken: postgres: database error 42P01 (UndefinedTableError)"
    assert by_type["job.failed"].products == {"broken": "failed", "sessions": "success"}


async def test_a_cancelled_job_tells_its_products_and_itself(
    pool: asyncpg.Pool, deploy: Callable[..., Awaitable[Deployment]]
) -> None:
    deployment = await deploy(PRODUCTS)
    later = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)
    job_id = await submit(pool, deployment, request(deployment.project_key, "someone", start_at=later))
    async with pool.acquire() as connection:
        await cancel_job(connection, job_id)

    events = await deployment.collector.of(job_id, {"product.sessions.cancelled", "job.cancelled"})
    assert [e.type for e in events] == ["job.scheduled", "product.sessions.cancelled", "job.cancelled"]


async def test_a_change_rolled_back_has_no_event_and_a_committed_one_has_one(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection, [NewJob(f"rb-{uuid.uuid4()}", project_id, [("userId", "x")])], ["p"], None
        )
        [job_id] = created.values()
        before = await _events_for(connection, job_id)
        with contextlib.suppress(RuntimeError):
            async with connection.transaction():
                await cancel_job(connection, job_id)
                raise RuntimeError("rolled back")
        assert await _events_for(connection, job_id) == before == ["job.scheduled"]
        await connection.execute("UPDATE jobs SET display_name = 'renamed' WHERE id = $1", job_id)  # not a status
        await cancel_job(connection, job_id)
        assert await _events_for(connection, job_id) == ["job.scheduled", "product.p.cancelled", "job.cancelled"]


async def test_a_refused_event_keeps_its_row_and_hooks_run_once_per_event(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        await connection.execute("DELETE FROM event_outbox")  # only this test's rows
        refused_request = f"refused-{uuid.uuid4()}"
        await create_jobs(connection, [NewJob(refused_request, project_id, [("userId", "x")])], [], None)
        await create_jobs(connection, [NewJob(f"fine-{uuid.uuid4()}", project_id, [("userId", "y")])], [], None)
    hooked: list[str] = []

    async def hook(_connection: asyncpg.Connection, events: list[dict[str, object]]) -> None:
        hooked.extend(str(event["eventId"]) for event in events)

    publisher = FakePublisher(refuse_containing={refused_request.encode()})
    session = Session(cast(Publisher, publisher), Topology("t", ()), asyncio.Event(), _no_channel)
    relay = EventRelayRole(pool, Topology("t", ()), interval=0.1, lease_seconds=0.2, hooks=[hook])
    await relay.tick(session)
    assert [m.routing_key for m in publisher.published] == ["job.scheduled"]
    assert publisher.published[0].exchange == "t.events"
    assert not publisher.published[0].mandatory
    assert await pool.fetchval("SELECT count(*) FROM event_outbox") == 1  # the refused one, leased
    assert len(hooked) == 1

    # Published twice (its lease ran out while the first relay waited for confirms):
    # both relays delete it, and the hooks run for whichever deleted it, once.
    publisher.refuse_containing.clear()
    await asyncio.sleep(0.3)
    async with pool.acquire() as first, pool.acquire() as second:
        taken = await claim(first, 10, 10_000, 0.01)
        await asyncio.sleep(0.05)
        taken_again = await claim(second, 10, 10_000, 10)
        assert [b.outbox_id for b in taken] == [b.outbox_id for b in taken_again]
        await relayed(first, taken, [hook])
        await relayed(second, taken_again, [hook])
    assert len(hooked) == len(set(hooked)) == 2
    assert await pool.fetchval("SELECT count(*) FROM event_outbox") == 0


async def test_event_types_left_out_are_relayed_to_the_hooks_but_not_published(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        await connection.execute("DELETE FROM event_outbox")  # only this test's rows
        created = await create_jobs(
            connection, [NewJob(f"some-{uuid.uuid4()}", project_id, [("userId", "x")])], ["p"], None
        )
        [job_id] = created.values()
        await cancel_job(connection, job_id)
    hooked: list[str] = []

    async def hook(_connection: asyncpg.Connection, events: list[dict[str, object]]) -> None:
        hooked.extend(str(event["type"]) for event in events)

    publisher = FakePublisher()
    session = Session(cast(Publisher, publisher), Topology("t", ()), asyncio.Event(), _no_channel)
    relay = EventRelayRole(
        pool, Topology("t", ()), interval=0.1, lease_seconds=5, hooks=[hook], publish_types=("job.*", "#.failed")
    )
    while await relay.tick(session):
        pass
    assert [m.routing_key for m in publisher.published] == ["job.scheduled", "job.cancelled"]
    assert hooked == ["job.scheduled", "product.p.cancelled", "job.cancelled"]
    assert relay.summary() == {"events_published": 2}
    assert await pool.fetchval("SELECT count(*) FROM event_outbox") == 0


async def _events_for(connection: asyncpg.Connection, job_id: int) -> list[str]:
    rows = await connection.fetch(
        "SELECT e.type FROM event_outbox, unnest(events) WITH ORDINALITY e WHERE e.job_id = $1 ORDER BY id, ordinality",
        job_id,
    )
    return [row["type"] for row in rows]


async def _no_channel() -> ConsumerChannel:
    raise AssertionError("the events relay opens no consumer channel")
