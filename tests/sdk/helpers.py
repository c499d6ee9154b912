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
