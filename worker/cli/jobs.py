"""`deletion-worker jobs list|show|cancel|verify`: jobs for operators."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import click
from rich.table import Table

from schemas.status import JobStatus
from worker.cli import common
from worker.ops.exitcodes import ExitCode
from worker.store.jobs import cancel_job
from worker.store.reads import get_job, get_product_status, job_chunks, list_due_jobs, list_jobs
from worker.store.reconcile import stuck_jobs
from worker.store.retention import identity_in_job

STATUSES = [status.value for status in JobStatus]
DURATION = re.compile(r"(?P<amount>\d+(\.\d+)?)(?P<unit>[dhms])")
DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def _job_summary(row: dict[str, Any]) -> dict[str, Any]:
    """What an operator sees of a job: ids, status, counts and times — no identity values."""
    return {
        "jobId": row["id"],
        "status": row["status"],
        "projectId": row["project_id"],
        "action": row["action"],
        "workorderId": row["workorder_id"],
        "identityCount": row["identity_count"],
        "errors": row["errors"],
        "createdAt": row["created_at"],
        "startAt": row["start_at"],
        "dispatchedAt": row["dispatched_at"],
        "finishedAt": row["finished_at"],
        "regulation": row["regulation"],
        "dueAt": row["due_at"],
        "dryRun": row["dry_run"],
    }


@click.group("jobs")
def jobs_group() -> None:
    """Inspect, cancel and verify jobs; find stuck ones."""


def parse_duration(text: str) -> timedelta:
    """`3d`, `12h`, `90m` or `45s`."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter("expected a number and a unit: 3d, 12h, 90m or 45s", param_hint="--due-within")
    return timedelta(**{DURATION_UNITS[match["unit"]]: float(match["amount"])})


@jobs_group.command("list")
@click.option("--project", "project_key", help="Only this projectKey.")
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this status.")
@click.option("--overdue", is_flag=True, help="Only active jobs past their due date, soonest due first.")
@click.option("--due-within", help="Only active jobs due within this time (3d, 12h), soonest due first.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
def list_command(
    project_key: str | None, status: str | None, overdue: bool, due_within: str | None, limit: int, as_json: bool
) -> None:
    """Newest jobs first (or, with --overdue / --due-within, the soonest due first)."""
    if overdue and due_within:
        raise click.UsageError("give --overdue or --due-within, not both")
    if (overdue or due_within) and status:
        raise click.UsageError("--overdue and --due-within list active jobs only; drop --status")
    horizon = (
        None
        if not (overdue or due_within)
        else datetime.now(UTC) + (parse_duration(due_within) if due_within else timedelta(0))
    )

    async def find(connection: asyncpg.Connection) -> list[dict[str, Any]]:
        if horizon is not None:
            return await list_due_jobs(connection, project_key, horizon, limit)
        return await list_jobs(connection, project_key, status, limit)

    rows = [_job_summary(row) for row in common.with_database(common.settings(), find)]
    if as_json:
        common.echo_json(rows)
        return
    table = Table("job", "status", "project", "action", "identities", "created", "due", "finished")
    for row in rows:
        table.add_row(
            str(row["jobId"]), row["status"], str(row["projectId"]), row["action"], str(row["identityCount"]),
            f"{row['createdAt']:%Y-%m-%d %H:%M:%S}", f"{row['dueAt']:%Y-%m-%d %H:%M}" if row["dueAt"] else "-",
            f"{row['finishedAt']:%H:%M:%S}" if row["finishedAt"] else "-",
        )  # fmt: skip
    common.console().print(table)


@jobs_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show_command(job_id: int, as_json: bool) -> None:
    """A job with its per-product status, chunk progress, errors and timing."""

    async def view_of(connection: asyncpg.Connection) -> dict[str, Any]:
        row = await get_job(connection, job_id)
        if row is None:
            raise common.CliError(f"job {job_id} not found", ExitCode.NOT_FOUND)
        products = (await get_product_status(connection, [job_id]))[job_id]
        chunks = {item["product"]: item for item in await job_chunks(connection, job_id)}
        return {
            **_job_summary(row),
            "products": [
                {
                    "product": p["product"],
                    "status": p["status"],
                    "since": p["created_at"],
                    "chunks": p["chunks_total"],
                    "chunksSuccess": p["chunks_success"],
                    "chunksFailed": p["chunks_failed"],
                    "tasks": chunks.get(p["product"], {}).get("tasks", 0),
                    "lastAck": chunks.get(p["product"], {}).get("last_ack"),
                    "error": p["error"],
                    # What the product did (in a dry run, what it would have deleted).
                    "deleted": p["deleted"],
                    "notFound": p["not_found"],
                    "identitiesFailed": p["identities_failed"] or 0,
                    "retries": p["retries"] or 0,
                    "startedAt": p["started_at"],
                    "finishedAt": p["finished_at"],
                }
                for p in products
            ],
        }

    view = common.with_database(common.settings(), view_of)
    if as_json:
        common.echo_json(view)
        return
    console = common.console()
    for key, value in view.items():
        if key != "products":
            console.print(f"[bold]{key}[/bold]: {value}")
    table = Table(
        "product", "status", "since", "chunks ok/failed/total", "tasks", "last ack",
        "would delete" if view["dryRun"] else "deleted", "not found", "failed ids", "retries", "seconds", "error",
    )  # fmt: skip
    for p in view["products"]:
        chunks = f"{p['chunksSuccess']}/{p['chunksFailed']}/{p['chunks']}"
        last_ack = f"{p['lastAck']:%H:%M:%S}" if p["lastAck"] else "-"
        took = (p["finishedAt"] - p["startedAt"]).total_seconds() if p["finishedAt"] and p["startedAt"] else None
        table.add_row(
            p["product"], p["status"], f"{p['since']:%H:%M:%S}", chunks, str(p["tasks"]), last_ack,
            _count(p["deleted"]), _count(p["notFound"]), str(p["identitiesFailed"]), str(p["retries"]),
            f"{took:.1f}" if took is not None else "-", p["error"] or "",
        )  # fmt: skip
    console.print(table)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


@jobs_group.command("cancel")
@click.argument("job_id", type=int)
def cancel_command(job_id: int) -> None:
    """Cancel a scheduled or running job (and its product work not yet done)."""

    common.with_database(common.settings(), lambda connection: cancel_job(connection, job_id, actor="cli"))
    common.echo_json({"jobId": job_id, "status": "cancelled"})


@jobs_group.command("verify")
@click.argument("job_id", type=int)
@click.option("--identity", required=True, help="NAMESPACE:VALUE to check.")
def verify_command(job_id: int, identity: str) -> None:
    """Whether an identity was part of a job — also after its values were replaced by keyed
    hashes. Exit 0 when it was, 3 when it was not."""
    loaded = common.settings()
    namespace, sep, value = identity.partition(":")
    if not sep or not namespace or not value:
        raise click.BadParameter("expected NAMESPACE:VALUE", param_hint="--identity")

    async def check(connection: asyncpg.Connection) -> bool:
        if await get_job(connection, job_id) is None:
            raise common.CliError(f"job {job_id} not found", ExitCode.NOT_FOUND)
        key = loaded.identity_hash_key.get_secret_value().encode()
        return await identity_in_job(connection, key, job_id, namespace, value)

    found = common.with_database(loaded, check)
    common.echo_json({"jobId": job_id, "partOfJob": found})
    if not found:
        raise click.exceptions.Exit(ExitCode.NOT_FOUND)


@jobs_group.command("stuck")
@click.option("--older-than", default=None, type=float, help="Minutes without progress (default DELETION_STUCK_AFTER).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
def stuck_command(older_than: float | None, limit: int, as_json: bool) -> None:
    """Active jobs that have not moved for a while, and why: not dispatched (no dispatcher
    running?), unpublished (tasks still in the outbox), or awaiting products (no
    acknowledgement: a product down or slow, or its dead letters waiting for a replay).
    Exit 0 when there are none, 1 when there are."""
    loaded = common.settings()
    window = timedelta(minutes=older_than) if older_than is not None else loaded.stuck_after
    found = common.with_database(loaded, lambda connection: stuck_jobs(connection, window, limit))
    if as_json:
        common.echo_json([job.as_dict() for job in found])
    else:
        table = Table("job", "reason", "since", "waiting for")
        for job in found:
            table.add_row(str(job.job_id), job.reason, f"{job.since:%Y-%m-%d %H:%M:%S}", ", ".join(job.products))
        common.console().print(table)
        click.echo(f"{len(found)} stuck job(s) without progress for {window}")
    if found:
        raise click.exceptions.Exit(ExitCode.FAILURE)
