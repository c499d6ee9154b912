"""Dead-letter tools: list without changing anything, replay after the fix completes the job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
import asyncpg

from tests.http_product import ProductEndpoint, serve_endpoint
from tests.support import WorkerHandle, job_ids_for, publish, publish_raw, queue_depth, request, wait_for_jobs
from worker.amqp import Publisher
from worker.ops import dlq
from worker.settings import Settings


def products(url: str) -> str:
    return f'[products.remote]\nhandler = "http"\nurl = "{url}"\nsecret = "s"\n'


async def wait_for_depth(settings: Settings, queue: str, expected: int) -> None:
    for _ in range(400):
        if (await queue_depth(settings, queue))[0] >= expected:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{queue} never reached {expected} messages")


async def test_replay_after_fixing_the_cause_completes_the_job(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    endpoint = ProductEndpoint(statuses=[503])
    async with serve_endpoint(endpoint):
        settings = make_settings(products(endpoint.url), retry_max_attempts=2)
        handle = await run_worker(settings)
        _, key = await make_project()
        deletion = request(key, "dead-then-alive@example.com")
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])
        dead_queue = handle.topology.product("remote").dead
        await wait_for_depth(settings, dead_queue, 1)
        await publish_raw(settings, handle.topology.requests.main, [b"not json"])
        await wait_for_depth(settings, handle.topology.requests.dead, 1)

        connection = await aio_pika.connect(settings.amqp_url)
        try:
            channel = await connection.channel()
            queues = dlq.dead_queues(handle.topology, None)
            listed = await dlq.list_dead(channel, queues)
            assert sorted(item.reason for item in listed) == [
                "json: body is not valid JSON",
                "retries exhausted after 2 attempts: http: answered 503",
            ]
            [task] = [item for item in listed if item.queue == dead_queue]
            assert task.origin == handle.topology.product("remote").main
            assert task.age_seconds is not None
            assert "dead-then-alive" not in str(task.as_dict())  # never identity values
            assert (await queue_depth(settings, dead_queue))[0] == 1  # listing took nothing away

            endpoint.statuses = [200]  # the product is fixed
            publisher = await Publisher.open(connection)
            replayed = await dlq.replay_dead(
                channel, publisher, dlq.dead_queues(handle.topology, dead_queue), message_ids={task.message_id or ""}
            )
            assert replayed == 1
            assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
            assert (await queue_depth(settings, dead_queue))[0] == 0

            assert await dlq.purge_dead(channel, dlq.dead_queues(handle.topology, handle.topology.requests.main)) == 1
            assert (await queue_depth(settings, handle.topology.requests.dead))[0] == 0
        finally:
            await connection.close()
