"""A worker process: runs its roles, survives broker and database restarts, stops gracefully.

The supervisor loop owns the broker connection. A session connects, declares the
topology, opens a channel per consumer and starts every role; when the connection or
any role fails, the whole session is torn down and started again after a backoff, so
every consumer is re-created on the new connection (nothing relies on a client library
restoring them). Unacked deliveries of a lost session return to their queues.

SIGTERM/SIGINT: consumers are cancelled at the broker, each role finishes the batch
in hand, connections close, one summary line is logged, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from aio_pika.abc import AbstractConnection

from worker import broker, metrics, topology
from worker.consumers.acks import AcksConsumer
from worker.consumers.base import BatchConsumer, ConsumerOptions
from worker.consumers.intake import IntakeConsumer
from worker.consumers.product import ProductConsumer
from worker.db import create_pool
from worker.dispatcher import Dispatcher
from worker.errors import describe
from worker.handlers.base import Handler
from worker.handlers.registry import build_handler
from worker.maintenance import Maintenance
from worker.products import ProductsFile
from worker.retry import RetryPolicy
from worker.roles import Role
from worker.settings import DEFAULT_IDENTITY_HASH_KEY, Settings
from worker.topology import Topology

log = structlog.get_logger(__name__)

# Reconnecting to a broker or database that is down: quick at first, then every 10 s at most.
RECONNECT_POLICY = RetryPolicy(max_attempts=1_000_000, base_ms=250, cap_ms=10_000)
HEARTBEAT_SECONDS = 5.0

ExtraService = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class Session:
    connection: AbstractConnection
    consumers: list[BatchConsumer] = field(default_factory=list)
    dispatcher: Dispatcher | None = None


class SessionLostError(Exception):
    pass


class WorkerProcess:
    def __init__(
        self,
        settings: Settings,
        products: ProductsFile,
        roles: list[Role],
        extra_services: list[ExtraService] | None = None,
    ) -> None:
        self.settings = settings
        self.products = products
        self.roles = roles
        self.topology = Topology(settings.topology_prefix, tuple(products.names))
        self.extra_services = extra_services or []
        self.stopping = asyncio.Event()
        self.pool: asyncpg.Pool | None = None
        self.handlers: dict[str, Handler] = {}
        self.session: Session | None = None
        self.totals: dict[str, int] = {"consumed": 0, "dead_lettered": 0, "retried": 0, "dispatched": 0}
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
        log.info("worker_starting", roles=[str(role) for role in self.roles], prefix=self.settings.topology_prefix)
        if self.settings.identity_hash_key.get_secret_value() == DEFAULT_IDENTITY_HASH_KEY:
            # Hashes made with a public key can be checked against guesses by anyone.
            log.warning("identity_hash_key_is_the_default", setting="DELETION_IDENTITY_HASH_KEY")
        for role in self.roles:
            if role.kind == "product" and role.product is not None:
                self.handlers[role.product] = build_handler(self.products, role.product, self.settings)
        metrics.EXPECTED_CONSUMERS.set(sum(1 for role in self.roles if role.kind != "dispatch"))
        background = [asyncio.create_task(self._heartbeat())]
        background += [asyncio.create_task(service(self.stopping)) for service in self.extra_services]
        try:
            self.pool = await self._connect_database()
            if self.pool is not None:
                await self._supervise(self.pool)
        finally:
            self.stopping.set()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, self.settings.shutdown_timeout)
            for handler in self.handlers.values():
                await handler.close()
            if self.pool is not None:
                await self.pool.close()
                metrics.DATABASE_CONNECTED.set(0)
            log.info(
                "worker_stopped",
                seconds=round(time.monotonic() - started, 1),
                reconnects=self.reconnects,
                **self.totals,
            )

    async def _connect_database(self) -> asyncpg.Pool | None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                pool = await create_pool(self.settings)
            except Exception as error:  # noqa: BLE001 - any failure to connect is retried
                attempt += 1
                log.warning("database_unavailable", error=describe(error), attempt=attempt)
                await self._sleep(RECONNECT_POLICY.delay_ms(attempt) / 1000)
            else:
                metrics.DATABASE_CONNECTED.set(1)
                return pool
        return None

    async def _supervise(self, pool: asyncpg.Pool) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                await self._run_session(pool)
                attempt = 0
            except Exception as error:  # noqa: BLE001 - a failed session is always restarted
                metrics.BROKER_CONNECTED.set(0)
                attempt += 1
                self.reconnects += 1
                delay = RECONNECT_POLICY.delay_ms(attempt) / 1000
                log.warning("session_lost", error=describe(error), attempt=attempt, retry_in_s=round(delay, 2))
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # -- one connection's worth of work -------------------------------------------------------

    async def _run_session(self, pool: asyncpg.Pool) -> None:
        connection = await broker.connect(self.settings.amqp_url)
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        session = Session(connection)
        self.session = session
        try:
            declare_channel = await connection.channel()
            await topology.declare(declare_channel, self.topology, self.settings.delivery_limit)
            await declare_channel.close()
            publisher = await broker.Publisher.open(connection)
            session_stop = asyncio.Event()
            tasks: list[asyncio.Task[None]] = []
            for role in self.roles:
                if role.kind == "dispatch":
                    session.dispatcher = self._dispatcher(pool, publisher)
                    tasks.append(asyncio.create_task(session.dispatcher.run(session_stop)))
                    tasks.append(asyncio.create_task(Maintenance(pool, self.settings).run(session_stop)))
                    continue
                consumer = self._consumer(role, pool, publisher)
                channel = await connection.channel()
                channel.close_callbacks.add(lambda *_: lost.set())
                await channel.set_qos(prefetch_count=self.settings.prefetch)
                await consumer.start(channel)
                session.consumers.append(consumer)
                tasks.append(asyncio.create_task(consumer.run(session_stop)))
            metrics.BROKER_CONNECTED.set(1)
            log.info("session_started", consumers=[c.names.main for c in session.consumers])
            await self._wait_session(tasks, lost, session_stop, session)
        finally:
            metrics.BROKER_CONNECTED.set(0)
            self._collect(session)
            self.session = None
            for consumer in session.consumers:
                metrics.CONSUMERS_ACTIVE.labels(consumer.names.main).set(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def _wait_session(
        self,
        tasks: list[asyncio.Task[None]],
        lost: asyncio.Event,
        session_stop: asyncio.Event,
        session: Session,
    ) -> None:
        stop_waiter = asyncio.ensure_future(self.stopping.wait())
        lost_waiter = asyncio.ensure_future(lost.wait())
        done, _ = await asyncio.wait([*tasks, stop_waiter, lost_waiter], return_when=asyncio.FIRST_COMPLETED)
        stop_waiter.cancel()
        lost_waiter.cancel()
        if self.stopping.is_set() and not lost.is_set():
            # Graceful: no new deliveries, finish what is in hand.
            for consumer in session.consumers:
                await consumer.stop_consuming()
            session_stop.set()
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown_timeout", unfinished_roles=len(pending))
            return
        session_stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        failures = [t.exception() for t in done if t in tasks and not t.cancelled() and t.exception() is not None]
        if failures and failures[0] is not None:
            raise SessionLostError(describe(failures[0])) from failures[0]
        raise SessionLostError("broker connection or channel closed")

    def _collect(self, session: Session) -> None:
        for consumer in session.consumers:
            self.totals["consumed"] += consumer.stats.consumed
            self.totals["dead_lettered"] += consumer.stats.dead_lettered
            self.totals["retried"] += consumer.stats.retried
        if session.dispatcher is not None:
            self.totals["dispatched"] += session.dispatcher.dispatched

    def _options(self) -> ConsumerOptions:
        return ConsumerOptions(
            retry=RetryPolicy.from_settings(self.settings),
            batch_size=self.settings.batch_size,
            batch_wait_ms=self.settings.batch_wait_ms,
        )

    def _dispatcher(self, pool: asyncpg.Pool, publisher: broker.Publisher) -> Dispatcher:
        return Dispatcher(
            pool,
            publisher,
            self.topology,
            batch=self.settings.dispatch_batch,
            chunk_size=self.settings.chunk_size,
            task_max_items=self.settings.task_max_items,
            interval=self.settings.dispatch_interval,
        )

    def _consumer(self, role: Role, pool: asyncpg.Pool, publisher: broker.Publisher) -> BatchConsumer:
        options = self._options()
        if role.kind == "intake":
            return IntakeConsumer(
                self.topology.requests,
                publisher,
                options,
                pool=pool,
                products=self.products.names,
                prefix=self.topology.prefix,
                max_bytes=self.settings.max_message_bytes,
                max_identities=self.settings.max_identities,
                chunk_size=self.settings.chunk_size,
            )
        if role.kind == "acks":
            return AcksConsumer(self.topology.acks, publisher, options, pool=pool)
        assert role.product is not None
        return ProductConsumer(
            self.topology.product(role.product),
            publisher,
            options,
            pool=pool,
            product=role.product,
            handler=self.handlers[role.product],
            acks_queue=self.topology.acks.main,
            timeout=self.settings.handler_timeout,
            concurrency=self.settings.handler_concurrency,
        )

    # -- health --------------------------------------------------------------------------

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
            await self._sleep(HEARTBEAT_SECONDS)
