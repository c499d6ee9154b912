"""Reconnects do not spend the delivery counts of messages no handler saw.

RabbitMQ 3.x quorum queues count every return of a delivery towards x-delivery-limit,
returns by a lost channel included. Before: with a limit of 3, four reconnects moved
messages that were only prefetched (never handed to a handler) to the dead-letter queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg

from tests.http_product import ProductEndpoint, serve_endpoint
from tests.support import WorkerHandle, consumers_of, job_ids_for, publish, queue_depth, request, wait_for_jobs
from worker.settings import Settings


async def test_four_lost_sessions_dead_letter_nothing(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    async with serve_endpoint(ProductEndpoint(delay=3.0)) as slow:  # nothing finishes between the losses
        settings = make_settings(
            f'[products.slow]\nhandler = "http"\nurl = "{slow.url}"\nsecret = "s"\n',
            delivery_limit=3,
            task_max_items=1,  # a task per job: many deliveries for the product to hold
            handler_concurrency=1,
            prefetch=4,
        )
        handle = await run_worker(settings)
        _, key = await make_project()
        requests = [request(key, f"held-{i}") for i in range(4)]
        await publish(settings, requests)
        job_ids = await job_ids_for(pool, [r.request_id for r in requests])
        product = next(role for role in consumers_of(handle.worker) if role.name == "product:slow")
        previous = None
        for _ in range(4):
            deadline = time.monotonic() + 30
            # This session's deliveries: one in the handler's hands, one only prefetched.
            # And what came back counted has been refreshed (handed back as a fresh copy):
            # a loss before that finishes is a loss of the refresh itself, which RabbitMQ
            # 3.x counts like any other return.
            while product.inbox is previous or len(product.inbox.everything()) < 2 or product._background:
                assert time.monotonic() < deadline, "the product role never held tasks"
                await asyncio.sleep(0.01)
            previous = product.inbox
            session = handle.worker.session
            assert session is not None
            session.lost.set()  # the connection is gone: the broker takes every delivery back
            while handle.worker.session in (None, session):
                await asyncio.sleep(0.01)
        statuses = await wait_for_jobs(pool, job_ids, timeout=60)
        dead, _ = await queue_depth(settings, handle.topology.product("slow").dead)
    assert set(statuses.values()) == {"completed"}
    assert dead == 0
    assert handle.worker.reconnects == 4
    assert product.stats.handed_back > 0  # refreshed when they came back counted
