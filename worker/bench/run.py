"""The bench, step by step; returns every number as one JSON-ready dict."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from worker.bench import cpu
from worker.bench.api_reads import deep_paths, fill_jobs, job_paths, list_paths, measure_reads, small_organization
from worker.bench.broker_ceiling import measure_real_ceiling
from worker.bench.ceiling import measure_ceiling
from worker.bench.console_pages import catch_up_summary, measure_console
from worker.bench.environment import (
    BenchEnvironment,
    BenchProcessError,
    bench_environment,
    free_port,
    short_of_connections,
)
from worker.bench.memory import RssSampler
from worker.bench.pipeline import index_rows, run_paced, run_throughput, seed_rows, wait_events_relayed
from worker.bench.roles import run_roles
from worker.bench.workorder import run_workorder
from worker.ops.progress import Advance
from worker.roles.spec import all_roles
from worker.settings import Settings

STEP_COUNT = 7  # ceiling, setup, pipeline, paced, workorder, roles, api: one progress tick each
# How long the relay may take to publish a step's lifecycle events after its last job ended.
EVENTS_TIMEOUT = 120.0


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
    # The roles step: every role its own process, a backlog built while acks is down,
    # then this many work orders of `identities` at once.
    backlog: int = 50_000
    orders: int = 10
    # False: the event triggers disabled in the bench's database (what events cost).
    events: bool = True
    # False: the audit trail's triggers disabled in the bench's database (what it costs).
    audit: bool = True


class StepClock:
    """Wall time of each step (so a slow bench shows where its minutes went) and one
    progress tick per step, taken or skipped."""

    def __init__(self, advance: Advance) -> None:
        self.seconds: dict[str, float] = {}
        self.current = "start"
        self._advance = advance

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        self.current = name
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)
        self._advance(1)

    def skipped(self, steps: int = 1) -> None:
        self._advance(steps)


def _describe(error: BaseException) -> str:
    described = f"{type(error).__name__}: {error}"
    # Refused to the bench itself, or to its workers (who wait and retry: the pipeline stalls).
    if isinstance(error, asyncpg.TooManyConnectionsError) or short_of_connections(described):
        return f"Postgres is short of connections; free some or raise max_connections. {described}"
    return described


async def _wait_http(env: BenchEnvironment, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            env.check_processes()
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
    # The same roles as `run` with none named, so that both layouts do the same work: the
    # consumers `copies` times each, the round-based roles once (the events relay included:
    # without it the lifecycle events were left in the outbox, and the layout looked cheaper).
    consumers = ["intake", "acks", *(f"product:{p}" for p in env.products)]
    singletons = [str(spec) for spec in all_roles(env.products) if str(spec) not in consumers]
    started = [env.start("run", "--role", role) for role in consumers for _ in range(copies)]
    return [*started, *(env.start("run", "--role", role) for role in singletons)]


async def _cpu_groups(
    env: BenchEnvironment, connection: asyncpg.Connection, workers: list[subprocess.Popen[bytes]]
) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for worker in workers:
        role = env.logs[worker.pid][0].removeprefix("run").removeprefix(" --role ") or "run (every role)"
        groups.setdefault(f"worker {role}", []).append(worker.pid)
    groups.update(await cpu.postgres_groups(connection, env.database_name))
    amqp = urlsplit(env.settings.broker_urls[0])
    broker = cpu.listening_pid(amqp.port or 5672) if amqp.hostname in ("127.0.0.1", "localhost", "::1") else None
    if broker is not None:
        groups["rabbitmq"] = [broker]
    groups["bench (producer + polling)"] = [os.getpid()]
    return groups


async def _pipeline_with_cpu(
    env: BenchEnvironment, connection: asyncpg.Connection, workers: list[subprocess.Popen[bytes]], count: int
) -> dict[str, Any]:
    """The throughput run, with every process's CPU time per request over it."""
    groups = await _cpu_groups(env, connection, workers)
    before = cpu.snapshot(groups)
    result = await run_throughput(env, connection, 1, count)
    events_after = await wait_events_relayed(env, connection, EVENTS_TIMEOUT)
    # Backends opened during the run count from zero (see cpu.per_request_ms).
    groups.update(await cpu.postgres_groups(connection, env.database_name))
    after = cpu.snapshot(groups)
    return {
        **asdict(result),
        "events_relayed_after_s": round(events_after, 2),
        "cpu_ms_per_request": cpu.per_request_ms(before, after, result.completed),
    }


async def _api_reads(
    env: BenchEnvironment, connection: asyncpg.Connection, base_url: str, options: BenchOptions
) -> dict[str, Any]:
    low, high = await fill_jobs(env.database_url, env.project_key, options.api_jobs)
    total: int = await connection.fetchval("SELECT count(*) FROM jobs")
    single = await measure_reads(
        base_url, env.api_key, job_paths(env.project_key, low, high, options.api_requests), options.api_clients, total
    )
    listing = await measure_reads(
        base_url, env.api_key, list_paths(env.project_key, options.api_requests), options.api_clients, total
    )
    deep = await measure_reads(
        base_url, env.api_key, deep_paths(env.project_key, low, high, options.api_requests), options.api_clients, total
    )
    # An organization with one job, next to the million of another: its list must not
    # walk theirs (it took 0.4-0.6 s when it did).
    small_key = await small_organization(connection)
    small = await measure_reads(
        base_url, small_key, ["/workorder?limit=50"] * options.api_requests, options.api_clients, total
    )
    summary_seconds = await catch_up_summary(connection)
    console = {**await measure_console(base_url, env.api_key, high, total), "summary_catch_up_s": summary_seconds}
    return {
        "console_pages": console,
        "api_single_job": asdict(single),
        "api_list_page": asdict(listing),
        "api_deep_page": asdict(deep),
        "api_small_org_workorders": asdict(small),
    }


async def _roles(
    env: BenchEnvironment, connection: asyncpg.Connection, options: BenchOptions, first: int
) -> dict[str, Any]:
    roles = await run_roles(
        env,
        connection,
        first=first + options.identities,
        backlog=options.backlog,
        orders=options.orders,
        identities=options.identities,
    )
    return asdict(roles)


# What stops a bench part-way while everything measured so far still holds: a worker
# that died (e.g. it got no Postgres connection), a timeout, Postgres refusing a
# connection or a query (`too many connections`), a connection lost.
STEP_FAILURES = (BenchProcessError, TimeoutError, asyncpg.PostgresError, OSError)


async def _steps_in_environment(
    env: BenchEnvironment,
    options: BenchOptions,
    ceiling: dict[str, Any] | None,
    clock: StepClock,
    report: dict[str, Any],
) -> None:
    paced_rate = options.paced_rate or (ceiling["consumed_per_s"] / 2 if ceiling else 1000.0)
    # The paced run may overshoot its duration by one 50 ms tick; identities must not
    # overlap the work order's, or its handlers would find nothing to delete.
    paced_max = int(paced_rate * (options.paced_seconds + 0.1)) + 100
    clock.current = "setup"  # a failure to connect belongs to it
    connection = await asyncpg.connect(env.database_url)
    try:
        with clock.step("setup"):
            await seed_rows(connection, options.products, 1, options.requests + paced_max + options.identities)
            await index_rows(connection, options.products)
            workers = start_workers(env, options.copies_per_role)
            base_url = f"http://127.0.0.1:{free_port()}"
            env.start("api", "--host", "127.0.0.1", "--port", base_url.rsplit(":", 1)[1])
            # Webhook replays (`.webhooks`) have a consumer only where the notify role runs.
            pipeline_queues = [q for q in env.topology.consumer_queues() if q != env.topology.webhooks]
            await env.wait_for_consumers([q.main for q in pipeline_queues])
            await _wait_http(env, f"{base_url}/readyz")
        # The worker's memory over everything it processes: pipeline, paced run, work order.
        sampler = RssSampler([worker.pid for worker in workers])
        sampler.start()
        try:
            if "pipeline" in options.skip:
                clock.skipped(2)
            else:
                with clock.step("pipeline"):
                    report["pipeline"] = await _pipeline_with_cpu(env, connection, workers, options.requests)
                with clock.step("paced"):
                    paced = await run_paced(env, connection, 1 + options.requests, paced_rate, options.paced_seconds)
                    report["paced"] = asdict(paced)
                    # The next step starts on a quiet worker, not one still relaying these events.
                    await wait_events_relayed(env, connection, EVENTS_TIMEOUT)
            if "workorder" in options.skip:
                clock.skipped()
            else:
                with clock.step("workorder"):
                    first = 1 + options.requests + paced_max
                    order = await run_workorder(
                        base_url, env.api_key, env.project_key, first, options.identities, alive=env.check_processes
                    )
                    report["workorder"] = asdict(order)
        finally:
            report["worker_peak_rss_mb"] = await sampler.stop()
        if "roles" in options.skip:
            clock.skipped()
        else:
            with clock.step("roles"):
                for process in workers:  # this step brings its own processes, one per role
                    env.stop(process)
                report["roles"] = await _roles(env, connection, options, 1 + options.requests + paced_max)
        if "api" in options.skip:
            clock.skipped()
        else:
            with clock.step("api"):
                report.update(await _api_reads(env, connection, base_url, options))
    finally:
        await connection.close()


async def run_bench(settings: Settings, options: BenchOptions, advance: Advance) -> dict[str, Any]:
    """Runs every step not skipped; everything it made is removed when it returns or fails.

    A step that fails ends the bench with the report of the steps before it and
    `report["error"]` saying which step failed and why (the caller shows both)."""
    started = time.perf_counter()
    report: dict[str, Any] = {"options": {**asdict(options), "skip": sorted(options.skip)}}
    clock = StepClock(advance)
    ceiling: dict[str, Any] | None = None
    if "ceiling" in options.skip:
        clock.skipped()
    else:
        with clock.step("ceiling"):
            ceiling = asdict(await measure_ceiling(settings.broker_urls[0], options.requests))
            real = await measure_real_ceiling(settings.broker_urls[0], options.requests)
            ceiling["real"] = {**asdict(real), "per_s": real.per_s}
        report["ceiling"] = ceiling
    with tempfile.TemporaryDirectory(prefix="dwbench-") as workdir:
        async with bench_environment(
            settings, options.products, Path(workdir), events=options.events, audit=options.audit
        ) as env:
            report["environment"] = {"database": env.database_name, "topology_prefix": env.prefix}
            try:
                await _steps_in_environment(env, options, ceiling, clock, report)
            except STEP_FAILURES as error:
                report["error"] = {"step": clock.current, "message": _describe(error)}
    if ceiling and "pipeline" in report:
        completed = report["pipeline"]["completed_per_s"]
        # Against plain aio-pika's consume rate (the old figure, kept for comparison) and
        # against what the broker carries with the fastest client (the real ceiling).
        report["pipeline"]["ratio_to_ceiling"] = round(completed / ceiling["consumed_per_s"], 3)
        report["pipeline"]["ratio_to_real_ceiling"] = round(completed / ceiling["real"]["per_s"], 3)
    report["seconds"] = {**clock.seconds, "total": round(time.perf_counter() - started, 1)}
    return report
