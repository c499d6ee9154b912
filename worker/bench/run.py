"""The bench, step by step; returns every number as one JSON-ready dict."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from worker.bench.api_reads import fill_jobs, job_paths, list_paths, measure_reads
from worker.bench.ceiling import measure_ceiling
from worker.bench.environment import BenchEnvironment, bench_environment, free_port
from worker.bench.memory import RssSampler
from worker.bench.pipeline import index_rows, run_paced, run_throughput, seed_rows
from worker.bench.workorder import run_workorder
from worker.progress import Advance
from worker.settings import Settings


@dataclass(frozen=True)
class BenchOptions:
    requests: int = 20_000
    identities: int = 100_000
    products: int = 3
    api_jobs: int = 1_000_000
    api_clients: int = 4
    api_requests: int = 2_000
    paced_seconds: float = 8.0
    paced_rate: float | None = None  # default: half the ceiling's consume rate
    skip: frozenset[str] = frozenset()
    # 0: one `run` process with every role; N: each role in its own processes, N copies
    # of intake, acks and every product consumer (dispatch: one).
    copies_per_role: int = 0


async def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def start_workers(env: BenchEnvironment, copies: int) -> list[subprocess.Popen[bytes]]:
    if copies <= 0:
        return [env.start("run")]
    roles = ["intake", "acks", *(f"product:{p}" for p in env.products)]
    started = [env.start("run", "--role", role) for role in roles for _ in range(copies)]
    return [*started, env.start("run", "--role", "dispatch")]


async def _pipeline_steps(
    env: BenchEnvironment, options: BenchOptions, ceiling: dict[str, Any] | None, advance: Advance
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    paced_rate = options.paced_rate or (ceiling["consumed_per_s"] / 2 if ceiling else 1000.0)
    paced_max = int(paced_rate * options.paced_seconds) + 100
    total_rows = options.requests + paced_max + options.identities
    connection = await asyncpg.connect(env.database_url)
    try:
        await seed_rows(connection, options.products, 1, total_rows)
        await index_rows(connection, options.products)
        workers = start_workers(env, options.copies_per_role)
        api_port = free_port()
        env.start("api", "--host", "127.0.0.1", "--port", str(api_port))
        base_url = f"http://127.0.0.1:{api_port}"
        sampler = RssSampler([worker.pid for worker in workers])
        sampler.start()
        await env.wait_for_consumers([q.main for q in env.topology.consumer_queues()])
        await _wait_http(f"{base_url}/readyz")
        advance(1)
        next_identity = 1
        if "pipeline" not in options.skip:
            result = await run_throughput(env, connection, next_identity, options.requests)
            report["pipeline"] = asdict(result)
            next_identity += options.requests
            advance(1)
            paced = await run_paced(env, connection, next_identity, paced_rate, options.paced_seconds)
            report["paced"] = {**asdict(paced), "target_rate_per_s": round(paced_rate, 1)}
            next_identity += paced_max
            advance(1)
        if "workorder" not in options.skip:
            order = await run_workorder(base_url, env.api_key, env.project_key, next_identity, options.identities)
            report["workorder"] = asdict(order)
            advance(1)
        report["worker_peak_rss_mb"] = await sampler.stop()
        if "api" not in options.skip:
            low, high = await fill_jobs(connection, env.project_key, options.api_jobs)
            total = await connection.fetchval("SELECT count(*) FROM jobs")
            single = await measure_reads(
                base_url,
                env.api_key,
                job_paths(env.project_key, low, high, options.api_requests),
                options.api_clients,
                total,
            )
            listing = await measure_reads(
                base_url, env.api_key, list_paths(env.project_key, options.api_requests), options.api_clients, total
            )
            report["api_single_job"] = asdict(single)
            report["api_list_page"] = asdict(listing)
            advance(1)
    finally:
        await connection.close()
    return report


async def run_bench(settings: Settings, options: BenchOptions, advance: Advance) -> dict[str, Any]:
    report: dict[str, Any] = {"options": {**asdict(options), "skip": sorted(options.skip)}}
    ceiling: dict[str, Any] | None = None
    if "ceiling" not in options.skip:
        ceiling = asdict(await measure_ceiling(settings.amqp_url, options.requests))
        report["ceiling"] = ceiling
    advance(1)
    with tempfile.TemporaryDirectory(prefix="dwbench-") as workdir:
        async with bench_environment(settings, options.products, Path(workdir)) as env:
            report.update(await _pipeline_steps(env, options, ceiling, advance))
    if ceiling and "pipeline" in report:
        report["pipeline"]["ratio_to_ceiling"] = round(
            report["pipeline"]["completed_per_s"] / ceiling["consumed_per_s"], 3
        )
    return report
