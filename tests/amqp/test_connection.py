"""Failover at connect: the addresses of a cluster are tried in order until one answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
import pytest

from tests.faults.services import free_port
from tests.support import Services, WorkerHandle, job_ids_for, publish, request, wait_for_jobs
from worker.amqp import BrokerConnectionError, connect
from worker.amqp.connection import broker_addresses
from worker.settings import Settings


def closed_address(live: str) -> str:
    """The live broker's URL with a port nothing listens on: a node that is down."""
    parts = urlsplit(live)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{free_port()}"))


async def test_a_node_that_is_down_is_skipped(services: Services) -> None:
    down = closed_address(services.amqp_url)
    for urls in ([down, services.amqp_url], f"{down}, {services.amqp_url}"):
        connection = await connect(urls, timeout=5)
        try:
            assert isinstance(connection, aio_pika.Connection)
            assert connection.url.port == urlsplit(services.amqp_url).port
        finally:
            await connection.close()


async def test_when_every_node_is_down_the_error_is_a_connection_error(services: Services) -> None:
    with pytest.raises((BrokerConnectionError, OSError)):
        await connect([closed_address(services.amqp_url), closed_address(services.amqp_url)], timeout=5)


def test_addresses_are_one_url_several_or_none_is_refused() -> None:
    assert broker_addresses("amqp://a/") == ["amqp://a/"]
    assert broker_addresses(" amqp://a/ ,amqp://b/,") == ["amqp://a/", "amqp://b/"]
    assert broker_addresses(("amqp://a/", "amqp://b/")) == ["amqp://a/", "amqp://b/"]
    with pytest.raises(ValueError, match="no broker address"):
        broker_addresses(" , ")


async def test_the_worker_runs_on_the_second_address_when_the_first_is_down(
    services: Services,
    make_settings: Callable[..., Settings],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    pool: asyncpg.Pool,
) -> None:
    settings = make_settings(amqp_urls=f"{closed_address(services.amqp_url)},{services.amqp_url}")
    await run_worker(settings)
    _, key = await make_project()
    deletion = request(key, "failover@example.com")
    await publish(settings, [deletion])
    [job_id] = await job_ids_for(pool, [deletion.request_id])
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
