"""kill -9 of the process running each stage while thousands of requests are in flight:
a restarted process finishes all of them, and nothing is counted twice."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.faults.accounting import settle
from tests.faults.conftest import PRODUCTS
from tests.faults.helpers import publish_many, wait_for_consumers, wait_until
from tests.faults.processes import WorkerProcesses

REQUESTS = 3000
ROLES = {"intake": ("intake",), "dispatch": ("dispatch",), "acks": ("acks",)} | {
    f"product:{p}": (f"product:{p}",) for p in PRODUCTS
}

# When each stage is surely busy: some of the work behind it is done, most is not.
BUSY = {
    "intake": "SELECT count(*) >= 300 FROM jobs",
    "dispatch": "SELECT count(*) >= 300 FROM jobs WHERE dispatched_at IS NOT NULL",
    "product:p1": "SELECT count(*) >= 1 FROM task_chunks WHERE product = 'p1' AND status <> 'waiting'",
    "acks": "SELECT count(*) >= 300 FROM jobs WHERE status = 'completed'",
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("stage", list(BUSY))
async def test_kill_9_mid_stage_loses_and_duplicates_nothing(
    shared_setup: tuple[WorkerProcesses, asyncpg.Pool, str], stage: str
) -> None:
    workers, pool, project_key = shared_setup
    amqp_url = workers.env["DELETION_AMQP_URL"]
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    for name, roles in ROLES.items():
        workers.start(name, *roles)
    queues = [f"{prefix}.requests", f"{prefix}.acks", *(f"{prefix}.product.{p}" for p in PRODUCTS)]
    await wait_for_consumers(amqp_url, queues)

    publishing = asyncio.create_task(publish_many(amqp_url, prefix, project_key, REQUESTS, stage))
    await wait_until(pool, BUSY[stage])
    workers.kill9(stage)
    request_ids = await publishing
    await asyncio.sleep(0.5)
    workers.start(stage, *ROLES[stage])

    books = await settle(pool, request_ids, timeout=150)
    print(books.line(f"kill -9 {stage}"))  # noqa: T201 - the accounting is the test's report
    assert books.accepted == REQUESTS
    assert books.lost == 0
    assert books.duplicated == 0
    assert books.overcounted_products == 0
    assert books.identity_mismatches == 0
    assert books.completed == REQUESTS
