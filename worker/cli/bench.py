"""`deletion-worker bench`: measure the pipeline against the broker's ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import click

from worker.bench.report import render, summary
from worker.bench.run import BenchOptions, run_bench
from worker.cli import common
from worker.progress import progress

STEPS = ("ceiling", "pipeline", "workorder", "api")


@click.command("bench")
@click.option("--requests", default=20_000, show_default=True, help="Single-identity requests in the pipeline run.")
@click.option("--identities", default=100_000, show_default=True, help="Identities of the work order.")
@click.option("--products", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option("--api-jobs", default=1_000_000, show_default=True, help="Jobs in the table for the read test.")
@click.option("--api-clients", default=4, show_default=True, help="Concurrent HTTP clients of the read test.")
@click.option("--api-requests", default=2_000, show_default=True, help="Requests per read test.")
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
    skip: tuple[str, ...],
    as_json: bool,
    output: Path | None,
) -> None:
    """Runs on its own database and queue prefix, removed afterwards."""
    loaded = common.settings()
    options = BenchOptions(
        requests=requests, identities=identities, products=products, api_jobs=api_jobs, api_clients=api_clients,
        api_requests=api_requests, paced_seconds=paced_seconds, paced_rate=paced_rate, skip=frozenset(skip),
        copies_per_role=copies_per_role,
    )  # fmt: skip
    with progress(6, "bench") as advance:
        report = common.run(run_bench(loaded, options, advance))
    report["targets"] = summary(report)
    text = json.dumps(report, indent=2, default=str)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    if as_json:
        click.echo(text)
        return
    console = common.console()
    for table in render(report):
        console.print(table)


COMMANDS = [bench_command]
