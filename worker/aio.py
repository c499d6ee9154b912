"""Small async plumbing every role uses: waiting for the first of several things, and
sleeping unless asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any


async def wait_first(*awaitables: Awaitable[Any], timeout: float | None = None) -> set[asyncio.Future[Any]]:
    """Wait until one of `awaitables` is done (or `timeout` passes); the others are
    cancelled unless they were futures the caller passed in. Returns the done ones."""
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(item) for item in awaitables]
    owned = [future for future, item in zip(futures, awaitables, strict=True) if future is not item]
    done: set[asyncio.Future[Any]]
    try:
        done, _ = await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in owned:
            if not future.done():
                future.cancel()
    return done


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stopping` is set; returns whether it is set."""
    if seconds > 0 and not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()
