"""Every role in a process of its own, under the two loads that used to break them: a
backlog of single-identity requests built while the acks role is down, then drained;
and many 100,000-identity work orders at once. Reports how long each took and every
process's peak resident memory (VmHWM), the figure the 250 MB budget is about."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import orjson

from worker.amqp import connect
from worker.amqp.admin import queue_depths
from worker.bench.environment import BenchEnvironment, free_port
from worker.producer import Producer, build_request

PUBLISH_BATCH = 1000


@dataclass(frozen=True)
class RolesResult:
    backlog: int
    backlog_built_seconds: float
    backlog_drained_seconds: float
    backlog_drained_per_s: float
    orders: int
    order_identities: int
    orders_accepted_seconds: float
    orders_completed_seconds: float
    peak_rss_mb: dict[str, float]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def _until(env: BenchEnvironment, connection: asyncpg.Connection, query: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await connection.fetchval(query):
        env.check_processes()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bench waited {timeout} s for: {query}")
        await asyncio.sleep(0.1)


async def _backlog(
    env: BenchEnvironment, connection: asyncpg.Connection, first: int, count: int
) -> tuple[float, float]:
    """Publish `count` requests with no acks role, wait until every job waits for acks
    alone, then start it: (seconds to build, seconds to drain)."""
    requests = [build_request(env.project_key, [("userId", f"u{first + i}")]) for i in range(count)]
    started = time.perf_counter()
    async with Producer(env.settings.broker_urls, env.prefix) as producer:
        for start in range(0, count, PUBLISH_BATCH):
            await producer.publish(requests[start : start + PUBLISH_BATCH])
    total = await connection.fetchval("SELECT count(*) FROM jobs") + 0
    await _until(env, connection, "SELECT count(*) = 0 FROM dispatch_queue", 600)
    await _until(env, connection, f"SELECT count(*) >= {count} FROM running_jobs", 600)  # noqa: S608 - a number
    await _until(env, connection, "SELECT count(*) = 0 FROM task_outbox", 600)
    await _products_idle(env)
    built = time.perf_counter() - started
    drain_started = time.perf_counter()
    env.start("run", "--role", "acks")
    await _until(env, connection, f"SELECT count(*) >= {total} FROM jobs WHERE finished_at IS NOT NULL", 600)  # noqa: S608
    return round(built, 2), round(time.perf_counter() - drain_started, 2)


async def _products_idle(env: BenchEnvironment, timeout: float = 600) -> None:
    """Until the product queues are empty and the acks queue has stopped growing."""
    queues = [env.topology.product(p).main for p in env.products]
    connection = await connect(env.settings.broker_urls, name="deletion-worker bench")
    try:
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            env.check_processes()
            depths = await queue_depths(connection, [*queues, env.topology.acks.main])
            acks = depths[-1].ready or 0
            if all(not depth.ready for depth in depths[:-1]) and acks == last:
                return
            last = acks
            await asyncio.sleep(1.0)
    finally:
        await connection.close()
    raise TimeoutError("the products did not finish the backlog")


async def _orders(
    env: BenchEnvironment, base_url: str, orders: int, identities: int, first: int
) -> tuple[float, float]:
    """`orders` work orders of `identities` each, posted at once: (slowest accept, all completed)."""
    headers = {"Authorization": f"Bearer {env.api_key}", "x-sandbox-name": env.project_key}
    headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        started = time.perf_counter()

        async def post(index: int) -> tuple[str, float]:
            base = first + index * identities
            body = orjson.dumps(
                {
                    "action": "delete_identity",
                    "identities": [{"namespace": {"code": "userId"}, "id": f"u{base + i}"} for i in range(identities)],
                }
            )
            answer = await client.post("/workorder", content=body, headers=headers)
            answer.raise_for_status()
            return str(answer.json()["workorderId"]), time.perf_counter() - started

        posted = await asyncio.gather(*(post(i) for i in range(orders)))
        pending = {workorder for workorder, _ in posted}
        while pending and time.perf_counter() - started < 600:
            env.check_processes()
            for workorder in list(pending):
                view = (await client.get(f"/workorder/{workorder}", headers=headers)).json()
                if view.get("status") in {"completed", "failed", "cancelled"}:
                    pending.discard(workorder)
            await asyncio.sleep(0.2)
        if pending:
            raise TimeoutError(f"{len(pending)} work orders did not end in 600 s")
    return round(max(seconds for _, seconds in posted), 2), round(time.perf_counter() - started, 2)


async def run_roles(
    env: BenchEnvironment, connection: asyncpg.Connection, *, first: int, backlog: int, orders: int, identities: int
) -> RolesResult:
    """Runs with its own processes, one per role; the caller has stopped any other worker."""
    roles = ["intake", "dispatch", "maintenance", "reconciler", "events", "notify"]
    roles += [f"product:{p}" for p in env.products]
    processes = {role: env.start("run", "--role", role) for role in roles}
    port = free_port()
    processes["api"] = env.start("api", "--host", "127.0.0.1", "--port", str(port))
    await env.wait_for_consumers([env.topology.requests.main, *(env.topology.product(p).main for p in env.products)])
    built, drained = await _backlog(env, connection, first, backlog)
    processes["acks"] = env.processes[-1]
    accepted, completed = await _orders(env, f"http://127.0.0.1:{port}", orders, identities, first + backlog)
    peaks = {role: peak_rss_mb(process.pid) for role, process in processes.items()}
    for process in processes.values():
        env.stop(process)
    return RolesResult(
        backlog=backlog,
        backlog_built_seconds=built,
        backlog_drained_seconds=drained,
        backlog_drained_per_s=round(backlog / max(drained, 1e-6), 1),
        orders=orders,
        order_identities=identities,
        orders_accepted_seconds=accepted,
        orders_completed_seconds=completed,
        peak_rss_mb=peaks,
    )
