"""The pool follows a multi-host URL to the server that accepts writes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from tests.faults.services import free_port
from tests.support import Services
from worker.db import create_pool
from worker.settings import Settings


async def test_the_pool_skips_a_host_that_is_down_for_the_writable_one(services: Services, tmp_path: Path) -> None:
    """The first host listed is gone (a stopped primary); every connection of the pool,
    the first and those made after, lands on the next, which accepts writes."""
    parts = urlsplit(services.admin_database_url)
    user, at, server = parts.netloc.rpartition("@")
    netloc = f"{user}{at}127.0.0.1:{free_port()},{server}"
    url = parts._replace(netloc=netloc, query="target_session_attrs=read-write").geturl()
    pool = await create_pool(Settings(database_url=url), min_size=2, max_size=2)
    try:
        async with pool.acquire() as first, pool.acquire() as second:
            for connection in (first, second):
                assert not await connection.fetchval("SELECT pg_is_in_recovery()")
                assert await connection.fetchval("SELECT inet_server_port()") == parts.port
    finally:
        await pool.close()
