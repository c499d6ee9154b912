"""ProductWorker: connects, waits for the topology, runs sessions, reconnects, stops gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import structlog

from worker import tracing
from worker.aio import sleep_unless
from worker.amqp import AmqpConsumerChannel, BrokerConnectionError, Publisher, Topology, connect, is_broker_failure
from worker.amqp.presence import missing
from worker.amqp.topology import DEFAULT_RETRY_BASE_MS, DEFAULT_RETRY_CAP_MS, retry_tiers
from worker.errors import describe
from worker.logs import configure_logging
from worker.retry import RECONNECT_POLICY
from worker.sdk.copies import Copies
from worker.sdk.session import Counts, Handle, Limits, Session

log = structlog.get_logger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    """Tuning; the defaults suit the service's defaults. `retry_base_ms`/`retry_cap_ms` must
    equal the service's DELETION_RETRY_BASE_MS/_CAP_MS: they name its retry tiers."""

    batch_size: int = 8  # tasks whose items go to one `handle` call, at most
    batch_wait_ms: int = 5  # waited for more tasks to join a batch, when fewer are at hand
    concurrency: int = 2  # `handle` calls under way at once
    timeout: float = 30.0  # seconds one `handle` call may take; longer: retried later
    max_bytes: int = 64 * MIB  # bytes of tasks held at once (prefetched and in hand)
    task_max_bytes: int = 4 * MIB  # the service's DELETION_TASK_MAX_BYTES: no task is larger
    max_prefetch: int = 64  # tasks held at once, at most
    max_attempts: int = 8  # the service's DELETION_RETRY_MAX_ATTEMPTS
    retry_base_ms: int = DEFAULT_RETRY_BASE_MS
    retry_cap_ms: int = DEFAULT_RETRY_CAP_MS
    shutdown_timeout: float = 30.0  # seconds to finish the tasks in hand on stop()

    @property
    def window(self) -> int:
        """Prefetch: as many of the largest possible tasks as fit in `max_bytes`."""
        return max(1, min(self.max_prefetch, self.max_bytes // max(1, self.task_max_bytes)))


class ProductWorker:
    """Consumes `<prefix>.product.<product>`, calls `handle` with the items of a batch of
    tasks, publishes each task's acknowledgement to `<prefix>.acks` and acks the task.

        ProductWorker(amqp_url, "crm", handle).run()            # a program of its own
        async with ProductWorker(amqp_url, "crm", handle) as w:  # inside an async application
            await w.join()
    """

    def __init__(
        self,
        amqp_url: str | Sequence[str],
        product: str,
        handle: Handle,
        *,
        prefix: str = "deletion",
        options: Options | None = None,
    ) -> None:
        # Several addresses (a sequence, or one string with commas): a cluster's nodes,
        # tried in order at every (re)connect.
        self.amqp_url = amqp_url
        self.product = product
        self.handle = handle
        self.options = options or Options()
        self.topology = Topology(prefix, (product,), retry_tiers(self.options.retry_base_ms, self.options.retry_cap_ms))
        self.counts = Counts()
        self.consuming = asyncio.Event()  # set while tasks are being consumed
        self._stopping = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None

    def stop(self, reason: str = "stop requested") -> None:
        """Stop consuming; tasks in hand finish (within `shutdown_timeout`), the rest go back."""
        if not self._stopping.is_set():
            log.info("product_worker_stopping", product=self.product, reason=reason)
        self._stopping.set()

    async def serve(self) -> None:
        """Consume until stop(), across broker restarts; logs one summary line at the end."""
        started = time.monotonic()
        attempt = 0
        try:
            while not self._stopping.is_set():
                if await self._session():
                    attempt = 0
                    continue
                attempt += 1
                await sleep_unless(self._stopping, RECONNECT_POLICY.delay_ms(attempt) / 1000)
        finally:
            log.info(
                "product_worker_stopped",
                product=self.product,
                seconds=round(time.monotonic() - started, 1),
                **asdict(self.counts),
            )

    async def _session(self) -> bool:
        """One connection's worth of consuming; whether it got as far as consuming."""
        try:
            connection = await connect(self.amqp_url, name=f"deletion product {self.product}")
        except (BrokerConnectionError, OSError) as error:
            log.warning("broker_unreachable", product=self.product, error=describe(error))
            return False
        queue = self.topology.product(self.product)
        try:
            absent = await missing(
                connection, queues=[*queue.all(), self.topology.acks.main], exchanges=self.topology.retry_tier_names()
            )
            if absent:
                # The service declares the topology; until it has (or when the retry settings
                # differ from the service's), consuming would fail or retries could not be made.
                log.warning("topology_missing", product=self.product, missing=absent[:5], count=len(absent))
                return False
            lost = asyncio.Event()
            publisher = await Publisher.open(connection)
            channel = await AmqpConsumerChannel.open(connection, lost)
            session = Session(
                self.product,
                self.handle,
                limits=self._limits(),
                copies=self._copies(),
                acks_queue=self.topology.acks.main,
                publisher=publisher,
                channel=channel,
                lost=lost,
                counts=self.counts,
            )
            log.info("product_worker_consuming", product=self.product, queue=queue.main, window=self.options.window)
            await session.run(self._stopping, self.consuming, self.options.shutdown_timeout)
            if lost.is_set() and not self._stopping.is_set():
                log.warning("broker_session_lost", product=self.product)
        except Exception as error:
            if not (is_broker_failure(error) or isinstance(error, OSError)):
                raise
            log.warning("broker_session_lost", product=self.product, error=describe(error))
            return False
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)
        return True

    def _limits(self) -> Limits:
        o = self.options
        return Limits(o.window, o.batch_size, o.batch_wait_ms / 1000, o.concurrency, o.timeout)

    def _copies(self) -> Copies:
        o = self.options
        return Copies(
            self.topology, self.topology.product(self.product), o.max_attempts, o.retry_base_ms, o.retry_cap_ms
        )

    async def __aenter__(self) -> ProductWorker:
        self._serving = asyncio.create_task(self.serve())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.stop("leaving the async with block")
        await self.join()

    async def join(self) -> None:
        """Until the worker has stopped (after stop(), or SIGTERM under run())."""
        if self._serving is not None:
            await self._serving

    def run(self, *, configure_logs: bool = True) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully; for a program of its own."""
        if configure_logs:
            configure_logging()
        # As the service's processes do: spans exported over OTLP when the standard
        # variable names an endpoint, off (and the SDK never imported) otherwise.
        tracing.configure(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"), service=f"deletion product {self.product}")
        asyncio.run(self._serve_until_signalled())

    async def _serve_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        try:
            await self.serve()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
