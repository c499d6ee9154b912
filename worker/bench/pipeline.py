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
    failed: int
    seconds: float
    completed_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float


@dataclass(frozen=True)
class PacedResult(PipelineResult):
    """What a paced run achieved, next to what it aimed at: on a busy host the producer
    may publish below the target, and the pipeline may fall behind what was published."""

    target_rate_per_s: float
    published_per_s: float  # achieved publish rate over the publishing time
    publish_seconds: float
    backlog_at_publish_end: int  # published but not yet completed when publishing stopped
    backlog_growth_per_s: float
    kept_up: bool


# A paced run keeps up when it published at (nearly) the target and its backlog did not
# grow by more than this share of the rate over the second half of the publishing. A
# steady pipeline holds a backlog of about rate x latency, which does not grow: measured
# from zero, that alone read as growth (at 0.6 s of latency, 7.5 % of the rate over 8 s),
# and a pipeline that kept up was reported as falling behind.
KEPT_UP_SHARE = 0.05


@dataclass(frozen=True)
class Backlog:
    """Published but not yet completed, `at` seconds into the publishing."""

    at: float
    requests: int


def _paced(result: PipelineResult, target: float, halfway: Backlog, end: Backlog) -> PacedResult:
    publish_seconds = max(end.at, 1e-6)
    published = result.requests / publish_seconds
    growth = (end.requests - halfway.requests) / max(end.at - halfway.at, 1e-6)
    kept_up = published >= target * (1 - KEPT_UP_SHARE) and growth <= target * KEPT_UP_SHARE
    return PacedResult(
        **vars(result),
        target_rate_per_s=round(target, 1),
        published_per_s=round(published, 1),
        publish_seconds=round(publish_seconds, 2),
        backlog_at_publish_end=end.requests,
        backlog_growth_per_s=round(growth, 1),
        kept_up=kept_up,
    )


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


async def _terminal_counts(connection: asyncpg.Connection) -> tuple[int, int]:
    """(completed, failed) over the whole bench database.

    Counting the whole (private) table is a sequential scan, 11 ms at 40,000 jobs; asking
    about the run's own request ids with `request_id = ANY($1)` took 90 ms for 20,000 ids.
    Polled every 50 ms, the count alone was a tenth of the Postgres time of a pipeline run
    (pg_stat_statements): the bench was slowing what it measured. Hence POLL_SECONDS. Steps
    run one after another, so a count taken before a step is its baseline."""
    row = await connection.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'completed') AS completed,"
        " count(*) FILTER (WHERE status = 'failed') AS failed FROM jobs"
    )
    assert row is not None
    return int(row["completed"]), int(row["failed"])


# No job finishing for this long, with some still to go, is a stall (seen: workers short of
# Postgres connections, alive but doing nothing): the bench stops and says so.
STALL_SECONDS = 15.0

# How often the bench counts finished jobs. Only the end of a wait depends on it, and a
# run's end is read from its last job's finished_at (see _result), so a slower poll costs
# no precision.
POLL_SECONDS = 0.25


class PipelineStalledError(TimeoutError):
    pass


async def _wait_terminal(
    env: BenchEnvironment, connection: asyncpg.Connection, baseline: tuple[int, int], count: int, timeout: float
) -> tuple[int, int]:
    """Polls every POLL_SECONDS until `count` more jobs are completed or failed; returns how many of each."""
    deadline = time.monotonic() + timeout
    completed = failed = 0
    progressed = time.monotonic()
    while time.monotonic() < deadline:
        env.check_processes()  # a dead worker ends the bench now, not at the timeout
        now_completed, now_failed = await _terminal_counts(connection)
        done = now_completed - baseline[0] + now_failed - baseline[1]
        if done != completed + failed:
            progressed = time.monotonic()
        completed, failed = now_completed - baseline[0], now_failed - baseline[1]
        if done >= count:
            break
        if time.monotonic() - progressed > STALL_SECONDS:
            raise PipelineStalledError(
                f"no job finished for {STALL_SECONDS:g} s ({done} of {count} done); worker output:\n{env.output_tail()}"
            )
        await asyncio.sleep(POLL_SECONDS)
    return completed, failed


async def wait_events_relayed(env: BenchEnvironment, connection: asyncpg.Connection, timeout: float) -> float:
    """Waits until the event outbox is empty (every lifecycle event of the requests so far
    published); returns the seconds it took. The pipeline's CPU window ends here: events
    relayed after the last job completed had been left out of the CPU per request, and
    their relaying slowed whichever step came next."""
    started = time.monotonic()
    while await connection.fetchval("SELECT EXISTS (SELECT 1 FROM event_outbox)"):
        env.check_processes()
        if time.monotonic() - started > timeout:
            raise PipelineStalledError(f"lifecycle events still waiting to be relayed after {timeout:g} s")
        await asyncio.sleep(POLL_SECONDS)
    return time.monotonic() - started


@dataclass(frozen=True)
class _Finished:
    last_finished_at: float | None  # epoch seconds
    latencies_ms: list[float]


async def _finished(connection: asyncpg.Connection, published_at: dict[str, float]) -> _Finished:
    """Latency of each finished request: the job's finished_at (Postgres now() of the
    transaction that completed it, same host clock) minus the time.time() taken just
    before the publish of the request's batch. Queried once, at the end."""
    rows = await connection.fetch(
        "SELECT request_id, extract(epoch FROM finished_at)::float8 AS finished FROM jobs"
        " WHERE request_id = ANY($1::text[]) AND finished_at IS NOT NULL",
        list(published_at),
    )
    finished = [float(row["finished"]) for row in rows]
    latencies = sorted((float(row["finished"]) - published_at[row["request_id"]]) * 1000 for row in rows)
    return _Finished(max(finished, default=None), latencies)


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))], 1)


def _result(
    requests: int, counts: tuple[int, int], first_publish: float, polled_end: float, finished: _Finished
) -> PipelineResult:
    # The end is the last job's finished_at when there is one: exact, where the poll is
    # up to POLL_SECONDS (plus a query) late.
    end = finished.last_finished_at or polled_end
    seconds = max(end - first_publish, 1e-6)
    completed, failed = counts
    return PipelineResult(
        requests=requests,
        completed=completed,
        failed=failed,
        seconds=round(seconds, 2),
        completed_per_s=round(completed / seconds, 1),
        latency_p50_ms=_percentile(finished.latencies_ms, 0.5),
        latency_p99_ms=_percentile(finished.latencies_ms, 0.99),
    )


async def run_throughput(
    env: BenchEnvironment, connection: asyncpg.Connection, first: int, count: int
) -> PipelineResult:
    """All requests published as fast as the thin producer goes, in batches with every
    confirm of a batch outstanding; the worker consumes meanwhile. Latency here is mostly
    time spent queued behind earlier requests; the paced run measures latency."""
    requests = [build_request(env.project_key, [("userId", f"u{first + i}")]) for i in range(count)]
    published_at: dict[str, float] = {}
    baseline = await _terminal_counts(connection)
    async with Producer(env.settings.broker_urls, env.prefix) as producer:
        first_publish = time.time()
        for start in range(0, count, PUBLISH_BATCH):
            batch = requests[start : start + PUBLISH_BATCH]
            now = time.time()
            published_at.update((r.request_id, now) for r in batch)
            await producer.publish(batch)
    counts = await _wait_terminal(env, connection, baseline, count, timeout=max(60.0, count / 200))
    polled_end = time.time()
    return _result(count, counts, first_publish, polled_end, await _finished(connection, published_at))


async def run_paced(
    env: BenchEnvironment, connection: asyncpg.Connection, first: int, rate: float, seconds: float
) -> PacedResult:
    """Publish at `rate` requests/s in small batches (every 50 ms) for `seconds`; latency per request."""
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    published_at: dict[str, float] = {}
    sent = 0
    baseline = await _terminal_counts(connection)

    async def backlog(at: float) -> Backlog:
        completed, failed = await _terminal_counts(connection)
        return Backlog(at, sent - (completed - baseline[0]) - (failed - baseline[1]))

    halfway: Backlog | None = None
    async with Producer(env.settings.broker_urls, env.prefix) as producer:
        first_publish = time.time()
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            if halfway is None and elapsed >= seconds / 2:
                halfway = await backlog(elapsed)
            batch = [build_request(env.project_key, [("userId", f"u{first + sent + i}")]) for i in range(per_tick)]
            now = time.time()
            published_at.update((r.request_id, now) for r in batch)
            await producer.publish(batch)
            sent += per_tick
            ahead = started + sent / rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        end = await backlog(time.perf_counter() - started)
    counts = await _wait_terminal(env, connection, baseline, sent, timeout=max(60.0, sent / 200))
    polled_end = time.time()
    result = _result(sent, counts, first_publish, polled_end, await _finished(connection, published_at))
    return _paced(result, rate, halfway or Backlog(0.0, 0), end)
