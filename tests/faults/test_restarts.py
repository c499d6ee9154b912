"""RabbitMQ and Postgres restarted mid-run (private servers, never the machine's own):
workers reconnect, every consumer comes back, every accepted request is carried out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.accounting import settle
from tests.faults.conftest import PRODUCTS, fault_setup
from tests.faults.helpers import consumer_counts, publish_many, wait_for_consumers
from tests.faults.services import PrivatePostgres, PrivateRabbitMQ
from tests.support import Services


@pytest.mark.timeout(300)
async def test_broker_restart_consumers_come_back_and_nothing_is_lost(
    services: Services, private_rabbitmq: PrivateRabbitMQ, tmp_path: Path
) -> None:
    async with fault_setup(services.admin_database_url, private_rabbitmq.url, tmp_path) as (workers, pool, key):
        prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
        queues = [f"{prefix}.requests", f"{prefix}.acks", *(f"{prefix}.product.{p}" for p in PRODUCTS)]
        workers.start("all")
        workers.start("second-intake", "intake")
        await wait_for_consumers(private_rabbitmq.url, queues)
        before = await publish_many(private_rabbitmq.url, prefix, key, 2000, "before")

        await asyncio.to_thread(private_rabbitmq.stop)
        with pytest.raises((OSError, ConnectionError)):  # publishing into an outage fails loudly
            await publish_many(private_rabbitmq.url, prefix, key, 10, "during")
        await asyncio.sleep(2)
        await asyncio.to_thread(private_rabbitmq.start)

        counts = await wait_for_consumers(private_rabbitmq.url, queues, timeout=90)
        for _ in range(120):  # each process reconnects on its own backoff (at most 10 s apart)
            if counts[f"{prefix}.requests"] == 2:
                break
            await asyncio.sleep(0.5)
            counts = await consumer_counts(private_rabbitmq.url, queues)
        after = await publish_many(private_rabbitmq.url, prefix, key, 1000, "after")
        books = await settle(pool, before + after, timeout=120)
        print(books.line("rabbitmq restart"), "consumers:", counts)  # noqa: T201 - the test's report
        assert counts[f"{prefix}.requests"] == 2  # both intake processes are back
        assert all(n >= 1 for n in (await consumer_counts(private_rabbitmq.url, queues)).values())
        assert books.lost == books.duplicated == books.overcounted_products == 0
        # Requests confirmed before the stop survive it: quorum queues keep them on disk.
        assert books.completed == books.accepted == 3000
        assert "session_lost" in workers.logs()


@pytest.mark.timeout(300)
async def test_postgres_restart_workers_reconnect_and_finish(
    services: Services, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    async with fault_setup(private_postgres.url, services.amqp_url, tmp_path) as (workers, pool, key):
        prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
        queues = [f"{prefix}.requests", f"{prefix}.acks", *(f"{prefix}.product.{p}" for p in PRODUCTS)]
        workers.start("all")
        await wait_for_consumers(services.amqp_url, queues)
        publishing = asyncio.create_task(publish_many(services.amqp_url, prefix, key, 3000, "pg"))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(3)
        await asyncio.to_thread(private_postgres.start)
        request_ids = await publishing
        await pool.expire_connections()
        books = await settle(pool, request_ids, timeout=150)
        print(books.line("postgres restart"))  # noqa: T201 - the test's report
        assert books.lost == books.duplicated == books.overcounted_products == books.identity_mismatches == 0
        assert books.completed == 3000
        # The outage was the database's: roles waited for it, the broker session stayed up.
        assert "dependency_unavailable" in workers.logs() or "round_deferred" in workers.logs()
        assert "session_lost" not in workers.logs()
