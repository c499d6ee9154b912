"""`deletion-worker api`: the HTTP API (with the web console under /console) alone."""

from __future__ import annotations

import asyncio
import signal

import click
import structlog

from worker.api.server import serve_api
from worker.cli import common
from worker.console.app import create_console_app
from worker.gc_tuning import tune_collector

log = structlog.get_logger(__name__)


@click.command("api")
@click.option("--host", default=None, help="Listen address (default DELETION_API_HOST).")
@click.option("--port", type=int, default=None, help="Listen port (default DELETION_API_PORT).")
def api_command(host: str | None, port: int | None) -> None:
    """Serve the HTTP API until SIGTERM/SIGINT (in-flight requests finish first)."""
    loaded = common.settings()
    common.products(loaded)  # a broken products file stops us here, with one line

    async def go() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        log.info("api_starting", host=host or loaded.api_host, port=port or loaded.api_port)
        app = create_console_app(loaded, common.products(loaded))
        await serve_api(loaded, stopping, host, port, app=app)
        log.info("api_stopped")

    tune_collector()
    common.run(go())
