"""Pausing the garbage collector: pauses nest, end with the last, and leave alone a
collector someone else turned off."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from worker.gc_pause import gc_paused


@pytest.fixture
def collector_on() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


@pytest.mark.usefixtures("collector_on")
async def test_pauses_of_two_tasks_nest_and_end_with_the_last() -> None:
    release = asyncio.Event()

    async def long_request() -> None:
        with gc_paused():
            await release.wait()
            assert not gc.isenabled()

    first = asyncio.create_task(long_request())
    await asyncio.sleep(0)
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled(), "the first pause still holds"
    release.set()
    await first
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_gc_pause_leaves_a_collector_someone_else_turned_off_alone() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError
    assert gc.isenabled(), "back on after an error too"
