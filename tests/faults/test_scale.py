"""Production scale and timing, every role in a process of its own: backlogs of 50,000
requests built while a role is down, commits slowed on purpose, ten 100,000-identity
work orders at once. Each test prints its accounting and every process's peak memory."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from tests.faults.accounting import settle
from tests.faults.conftest import PRODUCTS
from tests.faults.helpers import log_events, publish_many, wait_for_consumers
from tests.faults.processes import WorkerProcesses
from tests.faults.services import free_port
from worker.store.api_keys import create_key

BACKLOG = 50_000


async def wait_for(pool: asyncpg.Pool, query: str, timeout: float, *args: object) -> None:
    deadline = time.monotonic() + timeout
    while not await pool.fetchval(query, *args):
        assert time.monotonic() < deadline, f"never true: {query}"
        await asyncio.sleep(0.5)


def queues(prefix: str, *, without: tuple[str, ...] = ()) -> list[str]:
    names = {"intake": f"{prefix}.requests", "acks": f"{prefix}.acks"} | {
        f"product:{p}": f"{prefix}.product.{p}" for p in PRODUCTS
    }
    return [queue for role, queue in names.items() if role not in without]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("down", ["acks", "product:p2"])
async def test_a_backlog_built_while_a_role_was_down_drains_completely(
    shared_setup: tuple[WorkerProcesses, asyncpg.Pool, str], down: str
) -> None:
    workers, pool, project_key = shared_setup
    amqp_url = workers.env["DELETION_AMQP_URL"]
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    workers.start_every_role(PRODUCTS, without=(down,))
    await wait_for_consumers(amqp_url, queues(prefix, without=(down,)))

    request_ids = await publish_many(amqp_url, prefix, project_key, BACKLOG, f"backlog-{down}")
    # The backlog is complete when every job waits for the missing role alone.
    await wait_for(pool, "SELECT count(*) = $1 FROM jobs WHERE status = 'running'", 300, BACKLOG)
    if down == "acks":
        await wait_for(pool, "SELECT count(*) = 0 FROM task_outbox", 60)
    workers.start(down, down)

    books = await settle(pool, request_ids, timeout=300)
    await wait_for(pool, "SELECT count(*) = 0 FROM event_outbox", 300)  # every event told too
    peaks = workers.peak_rss_mb()
    print(books.line(f"backlog of {BACKLOG} while {down} was down"), "peak RSS MB:", peaks)  # noqa: T201
    # Bounded by bytes whatever the backlog (the events relay once held 640 MB of it).
    assert max(peaks.values()) < 250, peaks
    assert books.lost == books.duplicated == books.overcounted_products == books.identity_mismatches == 0
    assert books.completed == BACKLOG
    success = await pool.fetch(
        "SELECT product, count(*) AS n FROM product_status WHERE status = 'success' GROUP BY product"
    )
    assert {row["product"]: row["n"] for row in success} == dict.fromkeys(PRODUCTS, BACKLOG)
    assert "53200" not in workers.logs()  # the lock table never fills (it did: one lock per job)
    assert "message_dead_lettered" not in workers.logs()


COMMIT_LATENCY = """
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per transaction, at commit (the trigger is deferred): a synchronous replica
    -- or an fsync stall.
    IF coalesce(current_setting('dw.slept', true), '') = '' THEN
        PERFORM set_config('dw.slept', 'yes', true);
        PERFORM pg_sleep({seconds});
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slow_commit_jobs AFTER INSERT OR UPDATE ON jobs
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
CREATE CONSTRAINT TRIGGER slow_commit_chunks AFTER INSERT ON task_chunks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""


@pytest.mark.timeout(400)
@pytest.mark.parametrize("seconds", [0.05, 1.0])
async def test_slow_commits_strand_no_job(
    shared_setup: tuple[WorkerProcesses, asyncpg.Pool, str], seconds: float
) -> None:
    """An acknowledgement used to overtake dispatch's commit (publish, confirm, then commit)
    and be dropped as stale, leaving its job running forever."""
    workers, pool, project_key = shared_setup
    await pool.execute(COMMIT_LATENCY.format(seconds=seconds))
    amqp_url = workers.env["DELETION_AMQP_URL"]
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    workers.start_every_role(PRODUCTS)
    await wait_for_consumers(amqp_url, queues(prefix))
    request_ids: list[str] = []
    for round_ in range(20):  # a trickle, so that dispatch rounds are small and many
        request_ids += await publish_many(amqp_url, prefix, project_key, 100, f"slow-{seconds}-{round_}")
        await asyncio.sleep(0.02)
    books = await settle(pool, request_ids, timeout=300)
    print(books.line(f"commits {seconds * 1000:.0f} ms slower"))  # noqa: T201
    assert books.lost == books.duplicated == books.overcounted_products == 0
    assert books.completed == 2000
    # The symptom was acknowledgements matching no chunk yet ("stale") and being dropped.
    assert sum(event["stale"] for event in log_events(workers.logs(), "acks_applied")) == 0


@pytest.mark.timeout(600)
async def test_ten_100k_identity_work_orders_at_once(shared_setup: tuple[WorkerProcesses, asyncpg.Pool, str]) -> None:
    workers, pool, project_key = shared_setup
    async with pool.acquire() as connection:
        api_key = await create_key(connection, "org-faults")
    port = free_port()
    workers.start_command("api", "api", "--port", str(port))
    workers.start_every_role(PRODUCTS)
    await wait_for_consumers(workers.env["DELETION_AMQP_URL"], queues(workers.env["DELETION_TOPOLOGY_PREFIX"]))
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {api_key}", "x-sandbox-name": project_key}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for _ in range(100):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.2)

        async def order(index: int) -> str:
            identities = [{"namespace": {"code": "email"}, "id": f"wo{index}-{i}@example.com"} for i in range(100_000)]
            body = {"action": "delete_identity", "identities": identities}
            answer = await client.post("/workorder", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
            workorder_id: str = answer.json()["workorderId"]
            return workorder_id

        orders = await asyncio.gather(*(order(i) for i in range(10)))
        deadline = time.monotonic() + 400
        statuses: set[str] = set()
        while time.monotonic() < deadline:
            answers = [(await client.get(f"/workorder/{w}", headers=headers)).json() for w in orders]
            statuses = {a["status"] for a in answers}
            if statuses <= {"completed", "failed", "cancelled"}:
                break
            await asyncio.sleep(1)
    peaks = workers.peak_rss_mb()
    print(f"[ten 100k work orders] statuses={statuses} peak RSS MB: {peaks}")  # noqa: T201
    assert statuses == {"completed"}
    assert await pool.fetchval("SELECT count(*) FROM job_identities") == 1_000_000
    # Every role is bounded by bytes: nothing near the 800 MB one dispatch round once took.
    assert max(peaks.values()) < 400, peaks
