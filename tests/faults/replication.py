"""A private Postgres primary with a streaming standby, and a failover between them."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg

from tests.faults.services import PrivatePostgres

# With synchronous replication a commit returns only once the standby has the WAL: a
# standby promoted after the primary's crash has every transaction a client saw commit.
SYNCHRONOUS = ("synchronous_standby_names=*", "synchronous_commit=on")


class StreamingPair:
    def __init__(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.primary = PrivatePostgres(*(SYNCHRONOUS if synchronous else ()))
        self.standby: PrivatePostgres | None = None

    def start(self) -> None:
        self.primary.start()
        self.standby = PrivatePostgres(standby_of=self.primary)
        self.standby.start()

    def url(self, database: str = "postgres") -> str:
        """What every process is given: both servers, and only a writable one will do."""
        assert self.standby is not None
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    async def wait_streaming(self, timeout: float = 30) -> None:
        """Until the primary sees its standby streaming (and, if synchronous, as its sync standby)."""
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout
        connection = await asyncpg.connect(self.primary.url)
        try:
            while await connection.fetchval(
                "SELECT count(*) = 0 FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = $1", wanted
            ):
                assert time.monotonic() < deadline, "the standby never streamed"
                await asyncio.sleep(0.1)
        finally:
            await connection.close()

    def detach_standby(self) -> None:
        """The standby stops receiving WAL (as over a broken link) but stays up: asynchronous
        commits go on without it, synchronous ones wait for it."""
        assert self.standby is not None
        with (self.standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write("primary_conninfo = ''\n")  # the last setting of a name wins
        pid = int((self.standby.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGHUP)

    def fail_over(self, *, immediate: bool) -> float:
        """Stop the primary (a crash when `immediate`) and promote the standby; seconds taken."""
        assert self.standby is not None
        started = time.monotonic()
        self.primary.stop(immediate=immediate)
        self.standby.promote()
        return time.monotonic() - started

    def remove(self) -> None:
        self.primary.remove()
        if self.standby is not None:
            self.standby.remove()
