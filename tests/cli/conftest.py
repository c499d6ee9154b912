"""Running CLI commands in tests: the environment carries a test's settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from click.testing import CliRunner, Result

from worker.cli import cli
from worker.logs import reset_logging
from worker.settings import Settings, get_settings

Invoke = Callable[..., Awaitable[Result]]


def settings_env(settings: Settings) -> dict[str, str]:
    return {
        "DELETION_DATABASE_URL": settings.database_url,
        "DELETION_AMQP_URL": settings.amqp_url,
        "DELETION_TOPOLOGY_PREFIX": settings.topology_prefix,
        "DELETION_PRODUCTS_FILE": str(settings.products_file),
        "DELETION_IDENTITY_HASH_KEY": settings.identity_hash_key.get_secret_value(),
        "DELETION_LOG_LEVEL": "warning",
        "DELETION_RETRY_BASE_MS": str(settings.retry_base_ms),
        "DELETION_RETRY_CAP_MS": str(settings.retry_cap_ms),
    }


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """`await invoke(settings, "jobs", "show", "1")`: runs the command (in a thread, since
    commands start their own event loop) with the settings in the environment."""

    async def run(settings: Settings, *args: str) -> Result:
        for name, value in settings_env(settings).items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)

    yield run
    get_settings.cache_clear()
    reset_logging()  # the commands configured logging for this whole process
