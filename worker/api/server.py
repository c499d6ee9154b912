"""Serving the API with uvicorn inside a process whose signals belong to someone else
(`deletion-worker up` runs it beside the workers; `deletion-worker api` alone)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the owner of the process decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(
    settings: Settings,
    stopping: asyncio.Event,
    host: str | None = None,
    port: int | None = None,
    app: FastAPI | None = None,
) -> None:
    """Serve `app` (the CLI passes the API with the console, worker.console.app), else the API alone."""
    if app is None:
        app = create_app(settings, load_products(settings.products_file))
    config = uvicorn.Config(
        app,
        host=host or settings.api_host,
        port=port if port is not None else settings.api_port,
        log_level="warning",
        access_log=False,
        # Let in-flight requests finish on stop, but not forever.
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
    )
    server = EmbeddedServer(config)
    serving = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stopping.wait())
    await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopper.cancel()
    await serving
