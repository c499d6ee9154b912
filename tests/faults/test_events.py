"""Lifecycle events under kill -9: the relay killed mid-way resends, the role making the
changes killed mid-way makes each change (and so each event) once. After dedupe by
eventId, every job has exactly one event per change it went through."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict

import aio_pika
import asyncpg
import pytest

from schemas.events import LifecycleEvent
from tests.faults.accounting import settle
from tests.faults.conftest import PRODUCTS
from tests.faults.helpers import publish_many, wait_for_consumers, wait_until
from tests.faults.processes import WorkerProcesses

REQUESTS = 3000
EXPECTED = {"job.scheduled", "job.running", *(f"product.{p}.success" for p in PRODUCTS), "job.completed"}


@pytest.mark.timeout(600)
async def test_kill_9_of_the_relay_and_of_acks_leaves_one_event_per_change(
    shared_setup: tuple[WorkerProcesses, asyncpg.Pool, str],
) -> None:
    workers, pool, project_key = shared_setup
    amqp_url = workers.env["DELETION_AMQP_URL"]
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(f"{prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True)
        subscriber = await channel.declare_queue(f"{prefix}.test-subscriber", durable=True)
        await subscriber.bind(exchange, routing_key="#")
        workers.start_every_role(PRODUCTS, without=("events",))
        workers.start("events", "events", DELETION_OUTBOX_LEASE="5")
        await wait_for_consumers(amqp_url, [f"{prefix}.requests", f"{prefix}.acks"])

        publishing = asyncio.create_task(publish_many(amqp_url, prefix, project_key, REQUESTS, "events"))
        await wait_until(pool, "SELECT count(*) >= 300 FROM jobs WHERE status = 'completed'", timeout=180)
        workers.kill9("acks")
        await asyncio.sleep(0.3)
        workers.start("acks", "acks")
        await wait_until(pool, "SELECT count(*) >= 1500 FROM jobs WHERE status = 'completed'", timeout=180)
        workers.kill9("events")
        await asyncio.sleep(0.3)
        workers.start("events", "events", DELETION_OUTBOX_LEASE="5")
        request_ids = await publishing

        books = await settle(pool, request_ids, timeout=150)
        assert (books.completed, books.lost, books.duplicated) == (REQUESTS, 0, 0)
        await wait_until(pool, "SELECT NOT EXISTS (SELECT 1 FROM event_outbox)", timeout=180)

        received = 0
        unique: dict[str, LifecycleEvent] = {}
        # Until every expected event is in, then whatever else comes within 3 s (a busy
        # machine can pause deliveries for seconds; an idle gap alone is no end).
        wanted = REQUESTS * len(EXPECTED)
        deadline = time.monotonic() + 120
        async with subscriber.iterator(no_ack=True) as messages:
            with contextlib.suppress(TimeoutError):
                while len(unique) < wanted or time.monotonic() < deadline:
                    message = await asyncio.wait_for(anext(messages), timeout=3 if len(unique) >= wanted else 60)
                    received += 1
                    event = LifecycleEvent.model_validate_json(message.body)
                    unique[event.event_id] = event
        per_job: dict[int, Counter[str]] = defaultdict(Counter)
        for event in unique.values():
            per_job[event.job_id][event.type] += 1
        print(  # noqa: T201 - the test's report
            f"events received={received} unique={len(unique)} resent={received - len(unique)} jobs={len(per_job)}"
        )
        assert len(per_job) == REQUESTS
        wrong = {job: types for job, types in per_job.items() if types != Counter(EXPECTED)}
        assert not wrong, f"{len(wrong)} jobs with other events than one per change, e.g. {next(iter(wrong.items()))}"
    finally:
        with contextlib.suppress(Exception):
            await (await connection.channel()).queue_delete(f"{prefix}.test-subscriber")
        await connection.close()
