"""Dependencies gone for minutes: Postgres under the all-in-one process, and a product
that blackholes longer than the broker's consumer timeout. Nothing is dead-lettered,
nothing is lost, every job completes once the dependency is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.faults.accounting import settle
from tests.faults.conftest import fault_setup
from tests.faults.helpers import dead_letter_counts, publish_many, wait_for_consumers
from tests.faults.services import PrivatePostgres, PrivateRabbitMQ, available
from tests.http_product import ProductEndpoint, serve_endpoint
from tests.support import Services

OUTAGE_SECONDS = 150


@pytest.mark.timeout(600)
async def test_a_postgres_outage_of_minutes_dead_letters_nothing(
    services: Services, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    """Before: the dispatcher's database errors tore down the whole broker session of the
    all-in-one process; every delivery intake held was redelivered and counted, and with a
    delivery limit of 5 all 300 requests were dead within 45 s."""
    async with fault_setup(private_postgres.url, services.amqp_url, tmp_path) as (workers, pool, key):
        topology = workers.topology()
        # A low delivery limit: any return of a delivery to its queue would show quickly.
        workers.start("all", DELETION_DELIVERY_LIMIT="3", DELETION_UNAVAILABLE_HOLD="20")
        await wait_for_consumers(services.amqp_url, [names.main for names in topology.consumer_queues()])
        before = await publish_many(services.amqp_url, topology.prefix, key, 300, "before")
        await asyncio.to_thread(private_postgres.stop)
        during = await publish_many(services.amqp_url, topology.prefix, key, 300, "during")
        await asyncio.sleep(OUTAGE_SECONDS)
        dead_during = await dead_letter_counts(services.amqp_url, topology)
        await asyncio.to_thread(private_postgres.start)
        await pool.expire_connections()
        books = await settle(pool, before + during, timeout=180)
        dead = await dead_letter_counts(services.amqp_url, topology)
        logs = workers.logs()
        print(books.line(f"postgres gone {OUTAGE_SECONDS} s"), "dead letters:", dead)  # noqa: T201
        assert sum(dead_during.values()) == sum(dead.values()) == 0
        assert books.lost == books.duplicated == books.overcounted_products == books.identity_mismatches == 0
        assert books.completed == 600
        assert "session_lost" not in logs  # the broker session never went down with the database
        assert "holding_too_long_handing_back" in logs  # held work went back uncounted


BLACKHOLE_SECONDS = 75
CONSUMER_TIMEOUT_MS = 15_000


@pytest.mark.timeout(600)
async def test_a_product_blackholed_past_the_consumer_timeout_recovers(services: Services, tmp_path: Path) -> None:
    """Before: a product batch was acked only when all of it was done; against a dead
    endpoint a batch outlived the broker's consumer timeout, the channel was closed, and
    the batch looped until the broker dead-lettered it."""
    if not available():
        pytest.skip("rabbitmq-server is needed to start a private node")
    broker = PrivateRabbitMQ(f"consumer_timeout = {CONSUMER_TIMEOUT_MS}")
    until = time.monotonic() + 3600.0
    try:
        await asyncio.to_thread(broker.start)
        async with serve_endpoint(ProductEndpoint(hang_until=until)) as endpoint:
            statement = "DELETE FROM demo.sessions WHERE user_id = ANY($1)"
            products = f'[products.p1]\nhandler = "http"\nurl = "{endpoint.url}"\nsecret = "s"\n' + "".join(
                f'[products.{p}]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
                f'statements = ["{statement}"]\n'
                for p in ("p2", "p3")
            )
            async with fault_setup(services.admin_database_url, broker.url, tmp_path, products) as (workers, pool, key):
                topology = workers.topology()
                workers.start(
                    "all",
                    DELETION_HANDLER_TIMEOUT="3",
                    DELETION_TASK_MAX_ITEMS="5",
                    DELETION_RETRY_MAX_ATTEMPTS="60",
                    DELETION_RETRY_BASE_MS="500",
                    DELETION_RETRY_CAP_MS="4000",
                )
                await wait_for_consumers(broker.url, [names.main for names in topology.consumer_queues()])
                endpoint.hang_until = time.monotonic() + BLACKHOLE_SECONDS
                request_ids = await publish_many(broker.url, topology.prefix, key, 300, "blackhole")
                books = await settle(pool, request_ids, timeout=BLACKHOLE_SECONDS + 240)
                dead = await dead_letter_counts(broker.url, topology)
                logs = workers.logs()
        print(books.line(f"http product blackholed {BLACKHOLE_SECONDS} s"), "dead:", dead)  # noqa: T201
        assert books.completed == 300
        assert books.lost == books.duplicated == 0
        assert sum(dead.values()) == 0
        assert "session_lost" not in logs  # no channel closed for a delivery held past the timeout
        assert "handler time limit exceeded" in logs
    finally:
        await asyncio.to_thread(broker.remove)
