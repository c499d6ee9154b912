"""Shared plumbing of the CLI commands."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import IO, Any, TypeVar

import asyncpg
import click
from rich.console import Console

from worker import tracing
from worker.amqp import Connection, connect
from worker.logs import configure_logging
from worker.ops.exitcodes import ExitCode
from worker.products import ProductsFile, check_transport, load_products
from worker.settings import Settings, get_settings

T = TypeVar("T")


class CliError(click.ClickException):
    """Ends the command with a one-line message and a named exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.code = code
        # click ends the process with this code.
        self.exit_code = int(code)  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"deletion-worker: {self.format_message()}", err=True, file=file)


def settings() -> Settings:
    loaded = get_settings()
    configure_logging(loaded.log_level, loaded.log_format)
    tracing.configure(loaded.otel_exporter_otlp_endpoint)
    return loaded


def products(loaded: Settings) -> ProductsFile:
    configured = load_products(loaded.products_file)
    check_transport(configured, loaded.allow_insecure_http)
    return configured


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it exists: the worker and the producer spend a large share of their
    time in the event loop itself, and uvloop made a request ~5-10% cheaper for both."""
    try:
        import uvloop  # noqa: PLC0415 - optional: not built for every platform
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coroutine)


async def connect_database(loaded: Settings) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(loaded.database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        raise CliError(f"cannot reach Postgres: {type(error).__name__}: {error}", ExitCode.UNAVAILABLE) from None


async def connect_broker(loaded: Settings) -> Connection:
    try:
        return await connect(loaded.broker_urls, name="deletion-worker cli")
    except (TimeoutError, OSError, ConnectionError) as error:
        raise CliError(f"cannot reach RabbitMQ: {type(error).__name__}", ExitCode.UNAVAILABLE) from None


def with_database(loaded: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on a fresh connection (closed afterwards) in a new event loop."""

    async def go() -> T:
        connection = await connect_database(loaded)
        try:
            return await work(connection)
        finally:
            await connection.close()

    return run(go())


def console() -> Console:
    """Rich output; wide when not on a terminal so that piped tables are not folded."""
    return Console(width=None if sys.stdout.isatty() else 200)


def echo_json(value: object) -> None:
    click.echo(json.dumps(value, default=str))
