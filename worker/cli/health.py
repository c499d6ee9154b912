"""`deletion-worker health`: the container probe of a worker process.

It reads the process's own metrics endpoint, so it checks what the process itself
knows: connected to the broker and the database, every consumer active, and the loop
alive (a fresh heartbeat).
"""

from __future__ import annotations

import time

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families

from worker.cli import common
from worker.ops.exitcodes import ExitCode


def problems_in(metrics_text: str, max_heartbeat_age: float, now: float) -> list[str]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    problems = []
    if values.get("deletion_broker_connected") != 1:
        problems.append("not connected to RabbitMQ")
    if values.get("deletion_database_connected") != 1:
        problems.append("not connected to Postgres")
    heartbeat = values.get("deletion_worker_heartbeat_timestamp_seconds", 0.0)
    if now - heartbeat > max_heartbeat_age:
        problems.append(f"no heartbeat for {now - heartbeat:.0f} s")
    expected = values.get("deletion_consumers_expected", 0.0)
    active = values.get("deletion_consumers_active", 0.0)
    if active < expected:
        problems.append(f"{active:.0f} of {expected:.0f} consumers active")
    return problems


@click.command("health")
@click.option("--port", type=int, default=None, help="Metrics port of the process (default DELETION_METRICS_PORT).")
@click.option("--max-heartbeat-age", default=30.0, show_default=True, help="Seconds.")
def health_command(port: int | None, max_heartbeat_age: float) -> None:
    """Exit 0 only when the worker on this host is connected and consuming."""
    loaded = common.settings()
    url = f"http://127.0.0.1:{port or loaded.metrics_port}/metrics"
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError as error:
        raise common.CliError(
            f"unhealthy: metrics endpoint unreachable ({type(error).__name__})", ExitCode.UNHEALTHY
        ) from None
    problems = problems_in(text, max_heartbeat_age, time.time())
    if problems:
        raise common.CliError("unhealthy: " + "; ".join(problems), ExitCode.UNHEALTHY)
    click.echo("healthy")
