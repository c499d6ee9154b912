"""A consumer channel closed by its own role is not a lost session; closed by the broker, it is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiormq.exceptions
import pytest

from worker.amqp import AmqpConsumerChannel, connect
from worker.settings import Settings


async def test_only_a_close_the_broker_makes_ends_the_session(make_settings: Callable[..., Settings]) -> None:
    """Found in review: closing one role's channel set the session's `lost` event, so one
    role stopping (first in a graceful stop, or after its own failure) took every other
    role's session down with it."""
    settings = make_settings("")
    connection = await connect(settings.amqp_url)
    try:
        lost = asyncio.Event()
        ours = await AmqpConsumerChannel.open(connection, lost)
        await ours.close()
        await asyncio.sleep(0.1)
        assert not lost.is_set()
        theirs = await AmqpConsumerChannel.open(connection, lost)
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):  # the broker closes the channel
            await theirs.consume(f"{settings.topology_prefix}.no-such-queue", lambda _delivery: None)
        await asyncio.wait_for(lost.wait(), 5)
    finally:
        await connection.close()
