"""`deletion-worker keys create|revoke`: organization API keys."""

from __future__ import annotations

import click

from worker.cli import common
from worker.exitcodes import ExitCode
from worker.store.api_keys import create_key, revoke_key


@click.group("keys")
def keys_group() -> None:
    """Organization API keys (stored only as hashes)."""


@keys_group.command("create")
@click.option("--org", required=True, help="Organization id (created if new).")
def create(org: str) -> None:
    """Create a key; prints {"apiKey": "..."} — the only time it is shown."""
    loaded = common.settings()

    async def go() -> str:
        connection = await common.connect_database(loaded)
        try:
            return await create_key(connection, org)
        finally:
            await connection.close()

    common.echo_json({"apiKey": common.run(go())})


@keys_group.command("revoke")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke the key whose prefix is PREFIX (`dwk_XXXXXXXX`, as in createdBy)."""
    loaded = common.settings()

    async def go() -> bool:
        connection = await common.connect_database(loaded)
        try:
            return await revoke_key(connection, prefix)
        finally:
            await connection.close()

    if not common.run(go()):
        raise common.CliError("no live key has that prefix", ExitCode.NOT_FOUND)
    common.echo_json({"revoked": prefix})


COMMANDS = [keys_group]
