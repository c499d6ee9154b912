"""`deletion-worker bench`: measure the pipeline against the broker's ceiling."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click

from worker.amqp import BrokerConnectionError
from worker.bench.ceiling import CeilingStalledError
from worker.bench.environment import BenchProcessError
from worker.bench.report import render, summary
from worker.bench.run import STEP_COUNT, BenchOptions, run_bench
from worker.cli import common
from worker.logs import configure_logging
from worker.ops.exitcodes import ExitCode
from worker.ops.progress import progress
from worker.settings import get_settings

T = TypeVar("T")
STEPS = ("ceiling", "pipeline", "workorder", "roles", "api")


async def _stopped_by_sigterm_too(work: Coroutine[Any, Any, T]) -> T:
    """SIGTERM (a CI timeout, `kill`) cancels the bench like Ctrl-C does, so that its
    cleanup runs instead of leaving a database, queues and a worker behind."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@click.command("bench")
@click.option(
    "--requests",
    default=20_000,
    show_default=True,
    type=click.IntRange(1),
    help="Single-identity requests in the pipeline run.",
)
@click.option(
    "--identities", default=100_000, show_default=True, type=click.IntRange(1), help="Identities of the work order."
)
@click.option("--products", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option(
    "--api-jobs",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(1),
    help="Jobs in the table for the read test.",
)
@click.option(
    "--api-clients",
    default=4,
    show_default=True,
    type=click.IntRange(1),
    help="Concurrent HTTP clients of the read test.",
)
@click.option(
    "--api-requests", default=2_000, show_default=True, type=click.IntRange(1), help="Requests per read test."
)
@click.option(
    "--backlog",
    default=50_000,
    show_default=True,
    type=click.IntRange(1),
    help="Requests of the roles step's backlog (built while acks is down).",
)
@click.option(
    "--orders",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="Work orders posted at once in the roles step.",
)
@click.option("--paced-seconds", default=8.0, show_default=True)
@click.option(
    "--paced-rate", type=float, default=None, help="Requests/s of the latency run (default: half the ceiling)."
)
@click.option(
    "--copies-per-role",
    default=0,
    show_default=True,
    help="0: one worker process with every role; N: one process per role, N copies of each consumer role.",
)
@click.option(
    "--events/--no-events",
    default=True,
    show_default=True,
    help="--no-events: lifecycle-event triggers off in the bench's database, to measure what events cost.",
)
@click.option(
    "--audit/--no-audit",
    default=True,
    show_default=True,
    help="--no-audit: audit-trail triggers off in the bench's database, to measure what the trail costs.",
)
@click.option("--skip", multiple=True, type=click.Choice(STEPS), help="Leave a step out; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON report here.")
def bench_command(
    requests: int,
    identities: int,
    products: int,
    api_jobs: int,
    api_clients: int,
    api_requests: int,
    paced_seconds: float,
    paced_rate: float | None,
    copies_per_role: int,
    backlog: int,
    orders: int,
    events: bool,
    audit: bool,
    skip: tuple[str, ...],
    as_json: bool,
    output: Path | None,
) -> None:
    """Runs on its own database and queue prefix, removed afterwards."""
    loaded = get_settings()
    # The bench's own info lines (a migration applied to its private database) would
    # only clutter the table; debug stays available for whoever asks for it.
    configure_logging("debug" if loaded.log_level == "debug" else "warning", loaded.log_format)
    options = BenchOptions(
        requests=requests, identities=identities, products=products, api_jobs=api_jobs, api_clients=api_clients,
        api_requests=api_requests, paced_seconds=paced_seconds, paced_rate=paced_rate, skip=frozenset(skip),
        copies_per_role=copies_per_role, backlog=backlog, orders=orders, events=events, audit=audit,
    )  # fmt: skip
    try:
        with progress(STEP_COUNT, "bench") as advance:
            report = common.run(_stopped_by_sigterm_too(run_bench(loaded, options, advance)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # asyncio.run cancelled the bench and waited for its cleanup before raising this.
        raise common.CliError("interrupted; the bench's database, queues and processes were removed") from None
    except (BenchProcessError, CeilingStalledError, TimeoutError) as error:  # TimeoutError is an OSError: first
        raise common.CliError(f"bench failed: {error}") from None
    except asyncpg.TooManyConnectionsError as error:
        raise common.CliError(f"Postgres is short of connections: {error}", ExitCode.UNAVAILABLE) from None
    except (OSError, BrokerConnectionError) as error:
        raise common.CliError(f"cannot reach RabbitMQ or Postgres: {error}", ExitCode.UNAVAILABLE) from None
    report["targets"] = summary(report)
    text = json.dumps(report, indent=2, default=str)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    if as_json:
        click.echo(text)
    if not as_json:
        console = common.console()
        for table in render(report):
            console.print(table)
    if "error" in report:
        # What was measured is shown above; the bench still failed.
        stopped = report["error"]
        raise common.CliError(f"bench stopped in step {stopped['step']}: {stopped['message']}")
