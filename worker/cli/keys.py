"""`deletion-worker keys create|revoke`: organization API keys."""

from __future__ import annotations

import click

from worker.cli import common
from worker.ops.exitcodes import ExitCode
from worker.store.api_keys import create_key, revoke_key


@click.group("keys")
def keys_group() -> None:
    """Organization API keys (stored only as hashes)."""


@keys_group.command("create")
@click.option("--org", required=True, help="Organization id (created if new).")
@click.option("--operator", is_flag=True, help="Also sees queues and dead letters of every organization (console).")
def create(org: str, operator: bool) -> None:
    """Create a key; prints {"apiKey": "..."} — the only time it is shown."""
    key = common.with_database(common.settings(), lambda connection: create_key(connection, org, operator))
    common.echo_json({"apiKey": key})


@keys_group.command("revoke")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke the key whose prefix is PREFIX (`dwk_XXXXXXXX`, as in createdBy)."""
    if not common.with_database(common.settings(), lambda connection: revoke_key(connection, prefix)):
        raise common.CliError("no live key has that prefix", ExitCode.NOT_FOUND)
    common.echo_json({"revoked": prefix})
