"""`deletion-worker health`: the container probe of a worker process.

It reads the process's own metrics endpoint, so it checks what the process itself
knows. Readiness (the default): connected to the broker and the database, every
consumer active, the loop alive, and no role stalled. Liveness: the loop alive and no
role stalled; an outage of RabbitMQ or Postgres is not a reason to restart a process.

A role is stalled when it holds work and has settled none of it for --max-stall
seconds, unless it is waiting for a dependency it reports unavailable (a livelock, a
batch retried forever, a consumer that hangs: what a restart or a person must fix).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Literal

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families

from worker.cli import common
from worker.ops.exitcodes import ExitCode

Probe = Literal["readiness", "liveness"]


def _samples(metrics_text: str) -> tuple[dict[str, float], dict[str, dict[tuple[tuple[str, str], ...], float]]]:
    totals: dict[str, float] = {}
    labelled: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            labelled[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return totals, labelled


def stalled_roles(
    labelled: dict[str, dict[tuple[tuple[str, str], ...], float]], max_stall: float, now: float
) -> list[str]:
    waiting = {
        dict(labels)["role"]
        for labels, value in labelled.get("deletion_role_waiting", {}).items()
        if value == 1 and "role" in dict(labels)
    }
    progress = {
        dict(k)["role"]: v for k, v in labelled.get("deletion_role_last_progress_timestamp_seconds", {}).items()
    }
    problems = []
    for labels, pending_since in sorted(labelled.get("deletion_role_pending_since_timestamp_seconds", {}).items()):
        role = dict(labels).get("role", "?")
        if pending_since <= 0 or role in waiting:
            continue
        quiet = now - max(pending_since, progress.get(role, 0.0))
        if quiet > max_stall:
            problems.append(f"role {role} holds work and has settled none for {quiet:.0f} s")
    return problems


def problems_in(
    metrics_text: str, max_heartbeat_age: float, now: float, max_stall: float = 120.0, probe: Probe = "readiness"
) -> list[str]:
    values, labelled = _samples(metrics_text)
    problems = []
    if probe == "readiness":
        if values.get("deletion_broker_connected") != 1:
            problems.append("not connected to RabbitMQ")
        if values.get("deletion_database_connected") != 1:
            problems.append("not connected to Postgres")
    heartbeat = values.get("deletion_worker_heartbeat_timestamp_seconds", 0.0)
    if now - heartbeat > max_heartbeat_age:
        problems.append(f"no heartbeat for {now - heartbeat:.0f} s")
    if probe == "readiness":
        expected = values.get("deletion_consumers_expected", 0.0)
        active = values.get("deletion_consumers_active", 0.0)
        if active < expected:
            problems.append(f"{active:.0f} of {expected:.0f} consumers active")
    problems += stalled_roles(labelled, max_stall, now)
    return problems


@click.command("health")
@click.option("--port", type=int, default=None, help="Metrics port of the process (default DELETION_METRICS_PORT).")
@click.option("--probe", type=click.Choice(["readiness", "liveness"]), default="readiness", show_default=True)
@click.option("--max-heartbeat-age", default=30.0, show_default=True, help="Seconds.")
@click.option("--max-stall", default=120.0, show_default=True, help="Seconds a role may hold work without progress.")
def health_command(port: int | None, probe: Probe, max_heartbeat_age: float, max_stall: float) -> None:
    """Exit 0 only when the worker on this host is healthy (see --probe)."""
    loaded = common.settings()
    url = f"http://127.0.0.1:{port or loaded.metrics_port}/metrics"
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError as error:
        raise common.CliError(
            f"unhealthy: metrics endpoint unreachable ({type(error).__name__})", ExitCode.UNHEALTHY
        ) from None
    problems = problems_in(text, max_heartbeat_age, time.time(), max_stall, probe)
    if problems:
        raise common.CliError("unhealthy: " + "; ".join(problems), ExitCode.UNHEALTHY)
    click.echo("healthy")
