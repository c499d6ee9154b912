"""The pipeline end to end: single-identity requests from the thin producer, through a
worker process with every role, to jobs `completed` by real postgres handlers.

Two runs: a throughput run (all requests published as fast as the producer can, while
the worker works) and a latency run (requests paced at a fixed rate, latency measured
per request from just before its publish to the job's finished_at)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from worker.bench.environment import BenchEnvironment
from worker.producer import Producer, build_request

PUBLISH_BATCH = 1000


@dataclass(frozen=True)
class PipelineResult:
    requests: int
    completed: int
    seconds: float
    completed_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float


async def seed_rows(connection: asyncpg.Connection, products: int, first: int, count: int) -> None:
    """One row per identity in every product table, so each handler deletes something real."""
    for i in range(1, products + 1):
        await connection.execute(
            f"INSERT INTO bench.t{i} SELECT 'u' || g, 'payload' FROM generate_series($1::int, $2::int) g",  # noqa: S608
            first,
            first + count - 1,
        )


async def index_rows(connection: asyncpg.Connection, products: int) -> None:
    for i in range(1, products + 1):
        await connection.execute(f"CREATE INDEX IF NOT EXISTS t{i}_user_idx ON bench.t{i} (user_id)")


async def _wait_completed(connection: asyncpg.Connection, request_ids: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = await connection.fetchval(
            "SELECT count(*) FROM jobs WHERE request_id = ANY($1::text[]) AND status IN ('completed', 'failed')",
            request_ids,
        )
        if done >= len(request_ids):
            break
        await asyncio.sleep(0.05)
    return int(done)


async def _latencies(connection: asyncpg.Connection, published_at: dict[str, float]) -> tuple[float, float]:
    rows = await connection.fetch(
        "SELECT request_id, extract(epoch FROM finished_at) AS finished FROM jobs"
        " WHERE request_id = ANY($1::text[]) AND finished_at IS NOT NULL",
        list(published_at),
    )
    latencies = sorted((float(row["finished"]) - published_at[row["request_id"]]) * 1000 for row in rows)
    if not latencies:
        return 0.0, 0.0
    return round(latencies[len(latencies) // 2], 1), round(
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1
    )


async def run_throughput(
    env: BenchEnvironment, connection: asyncpg.Connection, first: int, count: int
) -> PipelineResult:
    requests = [build_request(env.project_key, [("userId", f"u{first + i}")]) for i in range(count)]
    published_at: dict[str, float] = {}
    started = time.perf_counter()
    async with Producer(env.settings.amqp_url, env.prefix) as producer:
        for start in range(0, count, PUBLISH_BATCH):
            batch = requests[start : start + PUBLISH_BATCH]
            now = time.time()
            published_at.update((r.request_id, now) for r in batch)
            await producer.publish(batch)
    completed = await _wait_completed(connection, list(published_at), timeout=max(60.0, count / 200))
    seconds = time.perf_counter() - started
    p50, p99 = await _latencies(connection, published_at)
    return PipelineResult(count, completed, round(seconds, 2), round(completed / seconds, 1), p50, p99)


async def run_paced(
    env: BenchEnvironment, connection: asyncpg.Connection, first: int, rate: float, seconds: float
) -> PipelineResult:
    """Publish at `rate` requests/s in small batches for `seconds`; latency per request."""
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    published_at: dict[str, float] = {}
    sent = 0
    started = time.perf_counter()
    async with Producer(env.settings.amqp_url, env.prefix) as producer:
        while time.perf_counter() - started < seconds:
            batch = [build_request(env.project_key, [("userId", f"u{first + sent + i}")]) for i in range(per_tick)]
            now = time.time()
            published_at.update((r.request_id, now) for r in batch)
            await producer.publish(batch)
            sent += per_tick
            ahead = started + sent / rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
    completed = await _wait_completed(connection, list(published_at), timeout=60)
    elapsed = time.perf_counter() - started
    p50, p99 = await _latencies(connection, published_at)
    return PipelineResult(
        sent, completed, round(elapsed, 2), round(sent / (time.perf_counter() - started), 1), p50, p99
    )
