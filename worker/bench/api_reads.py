"""API reads under concurrent clients, with a large jobs table made by the bench itself."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import aiohttp
import asyncpg

from worker.store.api_keys import create_key
from worker.store.jobs import NewJob, create_jobs
from worker.store.projects import create_project


@dataclass(frozen=True)
class ReadResult:
    jobs_in_table: int
    clients: int
    requests: int
    p50_ms: float
    p99_ms: float
    per_s: float


FILL_CONNECTIONS = 2  # one per core of the development machine
# Jobs as old ones look: ended, their identities past retention (so the reconciler and
# the maintenance role have nothing to do with them while the reads are measured).
FILL_SQL = """
    INSERT INTO jobs (request_id, project_id, workorder_id, bundle_id, action, reference_id, description,
                      status, identity_count, chunk_size, created_at, updated_at, finished_at, identities_hashed_at)
    SELECT 'bench-fill-' || n, $1, 'DI-fill-' || n, 'BN-fill-' || n, 'delete_user_data', 'user' || n,
           'Delete user sessions of userId = user' || n, 'completed', 1, 10000, now(), now(), now(), now()
    FROM generate_series($2::int, $3::int) g, lpad(g::text, 10, '0') n
"""


async def _fill_slice(database_url: str, project_id: int, first: int, last: int) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        # Skips the per-row foreign-key check on project_id (every row names the one real
        # project): a third of the fill's time. Needs a superuser; without one, the
        # checks just run.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("SET session_replication_role = replica")
        await connection.execute(FILL_SQL, project_id, first, last)
    finally:
        await connection.close()


async def fill_jobs(database_url: str, project_key: str, count: int) -> tuple[int, int]:
    """Insert `count` completed jobs into the project; returns the range of ids they got.

    In slices on FILL_CONNECTIONS connections at once, with zero-padded ids so that the
    unique text indexes grow at their right edge: 1,000,000 rows in about 16 s instead of
    35 s here. Nothing else inserts jobs meanwhile (the worker is idle), so every id
    between the largest before and the largest after is one of them."""
    connection = await asyncpg.connect(database_url)
    try:
        project_id = await connection.fetchval("SELECT id FROM projects WHERE key = $1", project_key)
        before: int = await connection.fetchval("SELECT coalesce(max(id), 0) FROM jobs")
        size = -(-count // FILL_CONNECTIONS)
        slices = [(first, min(count, first + size - 1)) for first in range(1, count + 1, size)]
        await asyncio.gather(*(_fill_slice(database_url, project_id, first, last) for first, last in slices))
        after: int = await connection.fetchval("SELECT max(id) FROM jobs")
        # As a table in service is: vacuumed (index-only scans see the rows as visible) and
        # analyzed, rather than vacuumed by autovacuum in the middle of the measurement.
        await connection.execute("VACUUM ANALYZE jobs")
    finally:
        await connection.close()
    return before + 1, after


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


def deep_paths(project_key: str, low: int, high: int, count: int) -> list[str]:
    """Pages of 200 deep in the project: half by offset up to the deepest served (100,000
    rows), half by `after` anywhere in the table."""
    rng = random.Random(13)
    offset = [f"/public/{project_key}/jobs?limit=200&page={rng.randint(400, 500)}" for _ in range(count // 2)]
    keyset = [f"/public/{project_key}/jobs?limit=200&after={rng.randint(low, high)}" for _ in range(count - count // 2)]
    return offset + keyset


async def small_organization(connection: asyncpg.Connection) -> str:
    """An organization with one project and one job; returns its API key."""
    _, project_key = await create_project(connection, "bench-small", "small")
    project_id = await connection.fetchval("SELECT id FROM projects WHERE key = $1", project_key)
    await create_jobs(connection, [NewJob("bench-small-1", project_id, [("userId", "small")])], [], None)
    return await create_key(connection, "bench-small")


def list_paths(project_key: str, count: int) -> list[str]:
    rng = random.Random(11)
    return [f"/public/{project_key}/jobs?limit=50&page={rng.randint(1, 20)}" for _ in range(count)]
