"""A Postgres failover mid-run: every role and the API are given a multi-host URL
(target_session_attrs=read-write); the primary is stopped and its streaming standby
promoted while thousands of requests are in flight. Every process finds the new primary
on its own, and every accepted request is carried out once.

Asynchronous replication is failed over with a fast stop, which sends the standby all WAL
before the primary exits; synchronous replication with its standby cut off for a while and
then an immediate stop (a crash), which it survives because no commit returned before the
standby had it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.faults.accounting import settle
from tests.faults.conftest import PRODUCTS, fault_setup
from tests.faults.helpers import publish_many, wait_for_consumers, wait_until
from tests.faults.replication import StreamingPair
from tests.faults.services import available, free_port
from tests.support import Services
from worker.store.api_keys import create_key

REQUESTS = 3000


async def post_workorders(base: str, headers: dict[str, str], stop: asyncio.Event) -> tuple[list[str], list[int]]:
    """One-identity work orders until `stop`, each retried with its Idempotency-Key until
    it is answered 200, as a careful client does; returns (workorder ids, statuses of the
    refusals met on the way)."""
    orders: list[str] = []
    refusals: list[int] = []
    body = {"action": "delete_identity", "identities": [{"namespace": {"code": "email"}, "id": "x@example.com"}]}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            keyed = {**headers, "Idempotency-Key": str(uuid.uuid4())}
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    answer = await client.post("/workorder", json=body, headers=keyed)
                    if answer.status_code == 200:
                        orders.append(answer.json()["workorderId"])
                        break
                    refusals.append(answer.status_code)
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.05)
    return orders, refusals


async def wait_healthy(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for _ in range(150):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError("the API never answered")


async def completed_jobs_after(pool: asyncpg.Pool, since: float, timeout: float = 90) -> float:
    """Seconds from `since` until the new primary has more completed jobs than when first read."""
    first: int | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            count = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
            if first is not None and count > first:
                return time.monotonic() - since
            first = count if first is None else first
        await asyncio.sleep(0.1)
    raise TimeoutError("no job completed after the failover")


# The synchronous case first cuts the standby off for a while: commits then wait for it,
# so none is acknowledged that the standby lacks. With asynchronous replication the same
# cut lets commits (and the acks behind them) go on, and the crash loses them.
CUT_OFF_SECONDS = 2.0


@pytest.mark.timeout(240)
@pytest.mark.parametrize("synchronous", [False, True], ids=["async-fast-stop", "sync-cut-off-then-crash"])
async def test_failover_to_the_promoted_standby_loses_nothing(
    services: Services, tmp_path: Path, synchronous: bool
) -> None:
    if not available():
        pytest.skip("the postgres binaries are needed to start a primary and its standby")
    began = time.monotonic()
    pair = StreamingPair(synchronous=synchronous)
    try:
        await asyncio.to_thread(pair.start)
        await pair.wait_streaming()
        async with fault_setup(pair.url(), services.amqp_url, tmp_path) as (workers, pool, key):
            async with pool.acquire() as connection:
                api_key = await create_key(connection, "org-faults")
            prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
            port = free_port()
            workers.start_command("api", "api", "--port", str(port))
            workers.start_every_role(PRODUCTS)
            queues = [f"{prefix}.requests", f"{prefix}.acks", *(f"{prefix}.product.{p}" for p in PRODUCTS)]
            await wait_for_consumers(services.amqp_url, queues)
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(base)

            stop_posting = asyncio.Event()
            headers = {"Authorization": f"Bearer {api_key}", "x-sandbox-name": key}
            posting = asyncio.create_task(post_workorders(base, headers, stop_posting))
            publishing = asyncio.create_task(publish_many(services.amqp_url, prefix, key, REQUESTS, "failover"))
            await wait_until(pool, "SELECT count(*) >= 500 FROM jobs WHERE status = 'completed'")

            if synchronous:
                pair.detach_standby()
                await asyncio.sleep(CUT_OFF_SECONDS)
            stopped = time.monotonic()
            promoted_in = await asyncio.to_thread(pair.fail_over, immediate=synchronous)
            await pool.expire_connections()
            moving_in = await completed_jobs_after(pool, stopped)
            request_ids = await publishing
            await asyncio.sleep(1.0)  # a few work orders after the failover too
            stop_posting.set()
            orders, refusals = await posting

            books = await settle(pool, request_ids, timeout=120)
            api_jobs = await pool.fetchval("SELECT count(*) FROM jobs WHERE request_id LIKE 'api:%'")
            api_completed = await pool.fetchval(
                "SELECT count(*) FROM jobs WHERE workorder_id = ANY($1::text[]) AND status = 'completed'", orders
            )
            success = await pool.fetch(
                "SELECT product, count(*) AS n FROM product_status WHERE status = 'success'"
                " AND job_id IN (SELECT id FROM jobs WHERE request_id NOT LIKE 'api:%') GROUP BY product"
            )
            on_standby = await pool.fetchval("SELECT inet_server_port()")
            logs = workers.logs()
        label = f"sync, standby cut off {CUT_OFF_SECONDS:.0f} s, immediate stop" if synchronous else "async, fast stop"
        print(  # noqa: T201 - the test's report
            books.line(f"failover {label}"),
            f"promoted in {promoted_in:.1f} s, jobs completing again {moving_in:.1f} s after the stop;",
            f"{len(orders)} work orders over the API ({len(refusals)} refusals: {sorted(set(refusals))});",
            f"run {time.monotonic() - began:.0f} s",
        )
        assert pair.standby is not None
        assert on_standby == pair.standby.port  # the books were read from the promoted standby
        assert books.lost == books.duplicated == books.overcounted_products == books.identity_mismatches == 0
        assert books.completed == REQUESTS
        assert {row["product"]: row["n"] for row in success} == dict.fromkeys(PRODUCTS, REQUESTS)
        # Every work order answered once is one job, completed; a retried one was not made twice.
        assert len(set(orders)) == len(orders) == api_jobs == api_completed
        # The outage was answered as one (503, retry), never as an internal error.
        assert 500 not in refusals
        assert "message_dead_lettered" not in logs
    finally:
        await asyncio.to_thread(pair.remove)
