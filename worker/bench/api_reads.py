"""API reads under concurrent clients, with a large jobs table made by the bench itself."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp
import asyncpg


@dataclass(frozen=True)
class ReadResult:
    jobs_in_table: int
    clients: int
    requests: int
    p50_ms: float
    p99_ms: float
    per_s: float


async def fill_jobs(connection: asyncpg.Connection, project_key: str, count: int) -> tuple[int, int]:
    """Insert `count` completed jobs into the project in one statement; returns the id range."""
    project_id = await connection.fetchval("SELECT id FROM projects WHERE key = $1", project_key)
    row = await connection.fetchrow(
        """
        WITH inserted AS (
            INSERT INTO jobs (request_id, project_id, workorder_id, bundle_id, action, reference_id, description,
                              status, identity_count, chunk_size, created_at, updated_at, finished_at)
            SELECT 'bench-fill-' || g, $1, 'DI-fill-' || g, 'BN-fill-' || g, 'delete_user_data', 'user' || g,
                   'Delete user sessions of userId = user' || g, 'completed', 1, 10000, now(), now(), now()
            FROM generate_series(1, $2::int) g
            RETURNING id
        )
        SELECT min(id) AS low, max(id) AS high FROM inserted
        """,
        project_id,
        count,
    )
    assert row is not None
    await connection.execute("ANALYZE jobs")
    return int(row["low"]), int(row["high"])


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))], 2)


async def measure_reads(base_url: str, api_key: str, paths: list[str], clients: int, jobs_in_table: int) -> ReadResult:
    """Each client takes the next path until none is left; latency per request.

    The client is aiohttp: httpx's own overhead per request (about 2 ms here) would
    be most of what is being measured."""
    headers = {"Authorization": f"Bearer {api_key}"}
    pending = list(paths)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url, headers=headers, connector=connector) as session:
        async with session.get(paths[0]) as warm:  # open a connection and fill the API's caches
            warm.raise_for_status()

        async def one_client() -> None:
            while pending:
                path = pending.pop()
                started = time.perf_counter()
                async with session.get(path) as answer:
                    await answer.read()
                    latencies.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return ReadResult(
        jobs_in_table, clients, len(paths), _percentile(latencies, 0.5), _percentile(latencies, 0.99),
        round(len(paths) / elapsed, 1),
    )  # fmt: skip


def job_paths(project_key: str, low: int, high: int, count: int) -> list[str]:
    rng = random.Random(7)
    return [f"/public/{project_key}/jobs/{rng.randint(low, high)}" for _ in range(count)]


def list_paths(project_key: str, count: int) -> list[str]:
    rng = random.Random(11)
    return [f"/public/{project_key}/jobs?limit=50&page={rng.randint(1, 20)}" for _ in range(count)]
