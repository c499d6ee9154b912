"""Shared by the SDK tests: a service whose products file names one external product."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from worker.sdk import Options, ProductWorker
from worker.sdk.session import Handle
from worker.settings import Settings

EXTERNAL_CRM = '[products.crm]\nhandler = "external"\n'


def sdk_options(settings: Settings, **overrides: Any) -> Options:
    """Options agreeing with the test service's retry settings (they name its retry tiers)."""
    values: dict[str, Any] = {
        "retry_base_ms": settings.retry_base_ms,
        "retry_cap_ms": settings.retry_cap_ms,
        "max_attempts": settings.retry_max_attempts,
        "shutdown_timeout": 10.0,
    }
    values.update(overrides)
    return Options(**values)


def crm_worker(settings: Settings, handle: Handle, **overrides: Any) -> ProductWorker:
    return ProductWorker(
        settings.amqp_url, "crm", handle, prefix=settings.topology_prefix, options=sdk_options(settings, **overrides)
    )


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


class TcpProxy:
    """Forwards connections to the broker; `drop()` cuts every one, as a broker loss would."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self.writers.discard(writer)

    def drop(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
