"""An isolated place to run the bench: its own database, queue prefix and processes,
all removed afterwards, so a bench disturbs nothing else on the broker or server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from worker.amqp import Topology, connect, topology
from worker.amqp.admin import queue_depths
from worker.ops.migrate import apply_migrations
from worker.settings import Settings
from worker.store.api_keys import create_key
from worker.store.projects import create_project


def short_of_connections(text: str) -> bool:
    """Postgres refused a connection for want of slots (SQLSTATE 53300), as asyncpg or
    Postgres words it in an error or a worker's log line."""
    lowered = text.lower()
    return "toomanyconnectionserror" in lowered or "too many connections" in lowered


class BenchProcessError(Exception):
    """A worker or API process of the bench ended early; the message ends with its output."""


@dataclass
class BenchEnvironment:
    settings: Settings
    database_url: str
    prefix: str
    products: list[str]
    workdir: Path
    project_key: str = ""
    api_key: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # Each process writes its output (warnings and errors only) to a file here, shown
    # when it dies early: a worker that cannot start must not look like a slow one.
    logs: dict[int, tuple[str, Path]] = field(default_factory=dict)
    identity_hash_key: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/")

    @property
    def products_file(self) -> Path:
        return self.workdir / "bench-products.toml"

    @property
    def topology(self) -> Topology:
        return Topology.for_settings(self.settings.model_copy(update={"topology_prefix": self.prefix}), self.products)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DELETION_DATABASE_URL": self.database_url,
            "DELETION_AMQP_URL": self.settings.amqp_url,
            "DELETION_AMQP_URLS": self.settings.amqp_urls,
            "DELETION_TOPOLOGY_PREFIX": self.prefix,
            "DELETION_PRODUCTS_FILE": str(self.products_file),
            "DELETION_METRICS_PORT": "0",
            "DELETION_LOG_LEVEL": "warning",
            "DELETION_LOG_FORMAT": "json",
            # The retry tiers its processes declare are the ones removed afterwards.
            "DELETION_RETRY_BASE_MS": str(self.settings.retry_base_ms),
            "DELETION_RETRY_CAP_MS": str(self.settings.retry_cap_ms),
            # A private database: its own key (and no warning about the default one).
            "DELETION_IDENTITY_HASH_KEY": self.identity_hash_key,
        }

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """`deletion-worker ARGS` in its own process (its RSS is then its own to sample)."""
        log = self.workdir / f"process-{len(self.processes)}-{args[0]}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                [sys.executable, "-c", "from worker.cli import main; main()", *args],
                env=self.env(),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        self.logs[process.pid] = (" ".join(args), log)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Stop one process (SIGTERM, then wait) and stop watching it."""
        if process in self.processes:
            self.processes.remove(process)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def check_processes(self) -> None:
        for process in self.processes:
            code = process.poll()
            if code is not None:
                command, log = self.logs[process.pid]
                output = log.read_text(errors="replace")
                # The cause can sit above a long traceback the tail shows (uvicorn's startup).
                cause = " (Postgres: too many connections)" if short_of_connections(output) else ""
                raise BenchProcessError(f"`deletion-worker {command}` exited with {code}{cause}:\n{output[-2000:]}")

    def output_tail(self, characters: int = 1500) -> str:
        """The end of every running process's output (warnings and errors only)."""
        tails = (
            f"`deletion-worker {command}`: {log.read_text(errors='replace')[-characters:].strip() or '(nothing)'}"
            for pid, (command, log) in self.logs.items()
            if any(process.pid == pid for process in self.processes)
        )
        return "\n".join(tails)

    async def wait_for_consumers(self, queues: list[str], timeout: float = 30) -> None:
        connection = await connect(self.settings.broker_urls, name="deletion-worker bench")
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.check_processes()
                depths = await queue_depths(connection, queues)
                if all(depth.consumers for depth in depths):
                    return
                await asyncio.sleep(0.2)
            raise TimeoutError(f"the worker did not start consuming; worker output:\n{self.output_tail()}")
        finally:
            await connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def products_toml(count: int) -> str:
    return "".join(
        f'[products.p{i}]\nhandler = "postgres"\nnamespaces = ["userId"]\n'  # noqa: S608 - TOML text, not a query
        f'statements = ["DELETE FROM bench.t{i} WHERE user_id = ANY($1::text[])"]\n\n'
        for i in range(1, count + 1)
    )


# `bench --no-events` and `--no-audit`: the pipeline without lifecycle events or without
# the audit trail, to see what each costs: the triggers that write the event outbox
# (migrations/0008) or the audit entries (0011) disabled in the bench's database, the
# others kept. Neither is a setting of the service: both are guarantees it keeps.
EVENT_TRIGGERS = {
    "jobs": ("jobs_lifecycle_events_inserted", "jobs_lifecycle_events_updated"),
    "product_status": ("product_status_lifecycle_events",),
}
AUDIT_TRIGGERS = {
    "jobs": ("jobs_audit_inserted", "jobs_audit_updated"),
    "product_status": ("product_status_audit",),
}


def disable_triggers(triggers: dict[str, tuple[str, ...]]) -> str:
    return "; ".join(
        f"ALTER TABLE {table} DISABLE TRIGGER {name}" for table, names in triggers.items() for name in names
    )


@contextlib.asynccontextmanager
async def bench_environment(
    settings: Settings, product_count: int, workdir: Path, *, events: bool = True, audit: bool = True
) -> AsyncIterator[BenchEnvironment]:
    name = f"dwbench_{secrets.token_hex(4)}"
    parts = urlsplit(settings.database_url)
    database_url = urlunsplit(parts._replace(path=f"/{name}"))
    environment = BenchEnvironment(
        settings=settings,
        database_url=database_url,
        prefix=f"bench{secrets.token_hex(4)}",
        products=[f"p{i}" for i in range(1, product_count + 1)],
        workdir=workdir,
    )
    environment.products_file.write_text(products_toml(product_count))
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await apply_migrations(database_url, settings.migrations_dir)
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute("CREATE SCHEMA bench")
            if not events:
                await connection.execute(disable_triggers(EVENT_TRIGGERS))
            if not audit:
                await connection.execute(disable_triggers(AUDIT_TRIGGERS))
            for i in range(1, product_count + 1):
                await connection.execute(f"CREATE TABLE bench.t{i} (user_id text NOT NULL, payload text)")
            _, environment.project_key = await create_project(connection, "bench", "bench")
            environment.api_key = await create_key(connection, "bench")
        finally:
            await connection.close()
        yield environment
    finally:
        for process in environment.processes:
            if process.poll() is None:
                process.terminate()
        for process in environment.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(Exception):
            amqp = await connect(settings.broker_urls, name="deletion-worker bench")
            try:
                await topology.delete(await amqp.channel(), environment.topology)
            finally:
                await amqp.close()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
