"""`deletion-worker jobs audit JOBID [--verify]`: a job's audit trail, for operators and
auditors; --verify recomputes its hash chain (and checks that the job's receipts point
into it) and exits INVALID when it does not hold."""

from __future__ import annotations

import asyncpg
import click
from rich.table import Table

from worker.cli import common
from worker.errors import NotFoundError
from worker.ops.exitcodes import ExitCode
from worker.receipts.signing import canonical_json
from worker.store.audit import AuditEntry, ChainCheck, ChainHead, contains_hash, entry_view, job_audit, verify_chain


async def _trail(connection: asyncpg.Connection, job_id: int) -> tuple[list[AuditEntry], ChainCheck, list[str]]:
    entries, head = await job_audit(connection, job_id)
    exists = await connection.fetchval("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1)", job_id)
    if not entries and not exists:
        raise NotFoundError(f"job {job_id} has no audit trail and does not exist")
    check = verify_chain(entries, head)
    return entries, check, await _receipt_problems(connection, job_id, entries, head)


async def _receipt_problems(
    connection: asyncpg.Connection, job_id: int, entries: list[AuditEntry], head: ChainHead | None
) -> list[str]:
    """A receipt names the chain head it was issued at: that entry must be in the chain."""
    heads = await connection.fetch(
        "SELECT finished_at, (document::json -> 'receipt' -> 'auditHead' ->> 'hash') AS head"
        " FROM receipts WHERE job_id = $1 ORDER BY finished_at",
        job_id,
    )
    return [
        f"the receipt of the ending at {row['finished_at']:%Y-%m-%d %H:%M:%S} names a head not in the chain"
        for row in heads
        if row["head"] is not None and not contains_hash(entries, bytes.fromhex(row["head"]))
    ]


@click.command("audit")
@click.argument("job_id", type=int)
@click.option("--verify", is_flag=True, help="Recompute the hash chain; exit 6 (INVALID) if it does not hold.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: entries, and the check.")
def audit_command(job_id: int, verify: bool, as_json: bool) -> None:
    """A job's audit trail, oldest first: every step of its life, hash-chained."""
    entries, check, receipt_problems = common.with_database(
        common.settings(), lambda connection: _trail(connection, job_id)
    )
    problems = check.problems + receipt_problems
    if as_json:
        view = {"jobId": job_id, "entries": [entry_view(entry) for entry in entries]}
        if verify:
            view |= {"intact": not problems, "problems": problems}
        click.echo(canonical_json(view).decode())
    else:
        table = Table("seq", "at", "kind", "detail", "hash")
        for entry in entries:
            table.add_row(str(entry.seq), entry.at_text, entry.kind, entry.detail, entry.hash.hex()[:16])
        common.console().print(table)
        if verify:
            for problem in problems:
                click.echo(f"BROKEN: {problem}", err=True)
            click.echo(f"{check.entries} entries, chain {'intact' if not problems else 'BROKEN'}")
    if verify and problems:
        raise click.exceptions.Exit(ExitCode.INVALID)
