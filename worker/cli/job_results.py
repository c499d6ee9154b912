"""`deletion-worker jobs identities|retry`: which identities failed, and sending only
those again. Identity values are shown while the job keeps them (an operator acts on
them); after retention only their keyed hashes."""

from __future__ import annotations

from typing import Any

import asyncpg
import click
from rich.table import Table

from worker.amqp import Topology
from worker.cli import common
from worker.ops.exitcodes import ExitCode
from worker.store.identity_results import cursor_of, list_failed_identities, parse_cursor
from worker.store.reads import get_job
from worker.store.retention import shown_hash
from worker.store.retry_failed import retry_failed


@click.command("identities")
@click.argument("job_id", type=int)
@click.option("--status", type=click.Choice(["failed"]), default="failed", show_default=True)
@click.option("--product", help="Only this product.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--after", help="Continue after this position (the `next` printed last).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, then the `next` position.")
def identities_command(
    job_id: int, status: str, product: str | None, limit: int, after: str | None, as_json: bool
) -> None:
    """The identities of a job that failed, per product, in the order they were given."""
    position = parse_cursor(after) if after else None
    if after and position is None:
        raise click.BadParameter("expected the `next` a previous page printed", param_hint="--after")

    async def page(connection: asyncpg.Connection) -> list[dict[str, Any]]:
        if await get_job(connection, job_id) is None:
            raise common.CliError(f"job {job_id} not found", ExitCode.NOT_FOUND)
        rows = await list_failed_identities(connection, job_id, product=product, limit=limit, after=position)
        return [
            {
                "product": row.product,
                "namespace": row.namespace,
                "id": row.value,
                "idHash": shown_hash(row.value_hash) if row.value is None and row.value_hash else None,
                "status": status,
                "error": row.reason,
                "retrying": row.retrying,
                "next": cursor_of(row),
            }
            for row in rows
        ]

    rows = common.with_database(common.settings(), page)
    following = rows[-1]["next"] if len(rows) == limit else None
    if as_json:
        for row in rows:
            common.echo_json({key: value for key, value in row.items() if key != "next"})
        common.echo_json({"next": following})
        return
    table = Table("product", "namespace", "identity", "error", "retrying")
    for row in rows:
        table.add_row(
            row["product"],
            row["namespace"],
            row["id"] or row["idHash"],
            row["error"] or "",
            "yes" if row["retrying"] else "",
        )
    common.console().print(table)
    click.echo(f"{len(rows)} failed identities" + (f"; more with --after {following}" if following else ""))


@click.command("retry")
@click.argument("job_id", type=int)
@click.option("--product", "products", multiple=True, help="Only this product's failures (repeatable).")
def retry_command(job_id: int, products: tuple[str, ...]) -> None:
    """Send only what failed again: the failed chunks of a running or failed job (of a
    chunk whose failed identities the product named, only those). The job is running
    again until the new acknowledgements end it. Exit 4 (refused) when nothing failed."""
    loaded = common.settings()
    configured = common.products(loaded).names
    channel = Topology.for_settings(loaded, configured).due_channel
    outcome = common.with_database(
        loaded,
        lambda connection: retry_failed(connection, job_id, list(products) or None, configured, notify_channel=channel),
    )
    common.echo_json(outcome.as_dict())
