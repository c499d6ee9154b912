"""`deletion-worker keys create [--operator]`: the key verifies, and says what it may see."""

from __future__ import annotations

import json
from collections.abc import Callable

import asyncpg

from tests.cli.conftest import Invoke
from worker.settings import Settings
from worker.store.api_keys import verify_key


async def test_operator_keys_are_marked(
    invoke: Invoke, pool: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings("")
    plain = json.loads((await invoke(settings, "keys", "create", "--org", "org-cli-keys")).output)["apiKey"]
    operator = json.loads((await invoke(settings, "keys", "create", "--org", "org-cli-keys", "--operator")).output)[
        "apiKey"
    ]
    try:
        async with pool.acquire() as connection:
            plain_owner = await verify_key(connection, plain)
            operator_owner = await verify_key(connection, operator)
        assert plain_owner is not None
        assert operator_owner is not None
        assert (plain_owner.org_id, plain_owner.operator) == ("org-cli-keys", False)
        assert (operator_owner.org_id, operator_owner.operator) == ("org-cli-keys", True)
    finally:
        await pool.execute("DELETE FROM api_keys WHERE org_id = 'org-cli-keys'")
