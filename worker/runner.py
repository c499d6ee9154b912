"""A worker process: runs its roles, survives broker and database trouble, stops gracefully.

The supervisor owns the broker connection. A session connects, declares the topology
and runs every role on it; only losing the connection (or a channel, or a consumer the
broker cancelled) ends a session, and then every role gets a new one after a backoff,
so every consumer is re-created (nothing relies on a client library restoring them).
A role's own trouble, a database outage included, stays with that role: it classifies
it and waits or retries (worker.roles.batch, worker.roles.loop), and a role that raises
anyway is restarted on its own.

SIGTERM/SIGINT: consumers are cancelled at the broker, each role finishes the work in
hand and hands back what it only buffered, connections close, one summary line is
logged, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import structlog

from worker import metrics
from worker.aio import sleep_unless, wait_first
from worker.amqp import AmqpConsumerChannel, ConsumerChannel, Publisher, Topology, connect, is_broker_failure
from worker.amqp import topology as declared
from worker.db import create_pool
from worker.errors import describe
from worker.products import ProductsFile
from worker.retry import RECONNECT_POLICY
from worker.roles.base import Role, Session, SessionLostError
from worker.roles.consuming import ConsumerCancelledError
from worker.roles.registry import BuildContext, build_roles
from worker.roles.spec import RoleSpec
from worker.settings import MIN_HASH_KEY_BYTES, Settings

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 5.0

ExtraService = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class WorkerProcess:
    def __init__(
        self,
        settings: Settings,
        products: ProductsFile,
        specs: list[RoleSpec],
        extra_services: list[ExtraService] | None = None,
    ) -> None:
        self.settings = settings
        self.products = products
        self.specs = specs
        self.topology = Topology.for_settings(settings, products.names)
        self.extra_services = extra_services or []
        self.stopping = asyncio.Event()
        self.pool: asyncpg.Pool | None = None
        self.roles: list[Role] = []
        self.session: Session | None = None
        self.reconnects = 0

    # -- lifecycle ----------------------------------------------------------------------

    def request_stop(self, reason: str = "signal") -> None:
        if not self.stopping.is_set():
            log.info("shutdown_requested", reason=reason)
            self.stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)

    async def run(self) -> None:
        started = time.monotonic()
        log.info("worker_starting", roles=[str(spec) for spec in self.specs], prefix=self.settings.topology_prefix)
        if self.settings.identity_hash_key_is_weak():
            # Hashes made with a public or short key can be checked against guesses by anyone.
            log.warning(
                "identity_hash_key_is_weak",
                setting="DELETION_IDENTITY_HASH_KEY",
                need=f"{MIN_HASH_KEY_BYTES} random bytes or more, not a placeholder",
            )
        if self.settings.webhook_secret_key_is_weak() and any(spec.kind == "notify" for spec in self.specs):
            # Webhook secrets sealed with a public key are as good as stored in plaintext.
            log.warning(
                "webhook_secret_key_is_weak",
                setting="DELETION_WEBHOOK_SECRET_KEY",
                need=f"{MIN_HASH_KEY_BYTES} random bytes or more, not a placeholder",
            )
        background = [asyncio.create_task(self._heartbeat())]
        background += [asyncio.create_task(service(self.stopping)) for service in self.extra_services]
        try:
            self.pool = await self._connect_database()
            if self.pool is not None:
                self.roles = build_roles(
                    BuildContext(self.settings, self.products, self.pool, self.topology), self.specs
                )
                metrics.EXPECTED_CONSUMERS.set(sum(1 for role in self.roles if role.consumes))
                await self._supervise()
        finally:
            self.stopping.set()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, self.settings.shutdown_timeout)
            for role in self.roles:
                with contextlib.suppress(Exception):
                    await role.close()
            if self.pool is not None:
                await self.pool.close()
                metrics.DATABASE_CONNECTED.set(0)
            totals: Counter[str] = Counter()
            for role in self.roles:
                totals.update(role.summary())
            log.info(
                "worker_stopped", seconds=round(time.monotonic() - started, 1), reconnects=self.reconnects, **totals
            )

    async def _connect_database(self) -> asyncpg.Pool | None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                pool = await create_pool(self.settings)
            except Exception as error:  # noqa: BLE001 - any failure to connect is retried
                attempt += 1
                log.warning("database_unavailable", error=describe(error), attempt=attempt)
                await sleep_unless(self.stopping, RECONNECT_POLICY.delay_ms(attempt) / 1000)
            else:
                metrics.DATABASE_CONNECTED.set(1)
                return pool
        return None

    async def _supervise(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                await self._run_session()
                attempt = 0
            except Exception as error:  # noqa: BLE001 - a failed session is always restarted
                metrics.BROKER_CONNECTED.set(0)
                attempt += 1
                self.reconnects += 1
                delay = RECONNECT_POLICY.delay_ms(attempt) / 1000
                log.warning("session_lost", error=describe(error), attempt=attempt, retry_in_s=round(delay, 2))
                await sleep_unless(self.stopping, delay)

    # -- one connection's worth of work ---------------------------------------------------

    async def _run_session(self) -> None:
        connection = await connect(self.settings.broker_urls)
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        try:
            await declared.declare(connection, self.topology, self.settings.delivery_limit)
            publisher = await Publisher.open(connection, confirm_timeout=self.settings.confirm_timeout)

            async def open_channel() -> ConsumerChannel:
                return await AmqpConsumerChannel.open(connection, lost)

            session = Session(publisher, self.topology, lost, open_channel)
            self.session = session
            session_stop = asyncio.Event()
            tasks = [asyncio.create_task(self._run_role(role, session, session_stop)) for role in self.roles]
            metrics.BROKER_CONNECTED.set(1)
            log.info("session_started", roles=[role.name for role in self.roles])
            await wait_first(self.stopping.wait(), lost.wait(), *tasks)
            session_stop.set()
            if self.stopping.is_set() and not lost.is_set():
                # Graceful: roles finish what is in hand and hand back what they only buffered.
                _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout)
                for task in pending:
                    task.cancel()
                if pending:
                    log.warning("shutdown_timeout", unfinished_roles=len(pending))
                return
            lost.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise SessionLostError("broker connection, channel or consumer lost")
        finally:
            metrics.BROKER_CONNECTED.set(0)
            self.session = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def _run_role(self, role: Role, session: Session, stop: asyncio.Event) -> None:
        """Run a role for this session; restart it on its own if it raises anything but a
        broker failure (which ends the session for everyone)."""
        failures = 0
        while not stop.is_set() and not session.lost.is_set():
            try:
                await role.run(session, stop)
            except (SessionLostError, ConsumerCancelledError) as error:
                log.warning("role_lost_its_session", role=role.name, error=describe(error))
                session.lost.set()
                return
            except Exception as error:
                if is_broker_failure(error) or session.lost.is_set():
                    session.lost.set()
                    return
                failures += 1
                delay = RECONNECT_POLICY.delay_ms(failures) / 1000
                log.exception("role_failed", role=role.name, error=describe(error), retry_in_s=round(delay, 2))
                await sleep_unless(stop, delay)
            else:
                return

    # -- health ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while not self.stopping.is_set():
            healthy = 0
            if self.pool is not None:
                try:
                    async with self.pool.acquire(timeout=5) as connection:
                        await connection.fetchval("SELECT 1")
                    healthy = 1
                except Exception as error:  # noqa: BLE001 - reported through the metric
                    log.warning("database_check_failed", error=describe(error))
            metrics.DATABASE_CONNECTED.set(healthy)
            metrics.HEARTBEAT.set(time.time())
            await sleep_unless(self.stopping, HEARTBEAT_SECONDS)
