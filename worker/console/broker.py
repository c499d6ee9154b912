"""The console's broker calls: the same operations as `deletion-worker queues` and
`deletion-worker dlq` (worker.ops), over a connection opened for the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from worker.amqp import Connection, Publisher, Topology, connect
from worker.api.state import ApiState
from worker.ops import dlq
from worker.ops.queues import QueueState, queue_states

DEAD_LETTERS_SHOWN = 200


@asynccontextmanager
async def broker(state: ApiState) -> AsyncIterator[Connection]:
    connection = await connect(list(state.settings.broker_urls), name="deletion-worker console")
    try:
        yield connection
    finally:
        await connection.close()


def topology(state: ApiState) -> Topology:
    return Topology.for_settings(state.settings, state.products.names)


async def queues_and_dead_letters(
    state: ApiState, dead_letters: bool
) -> tuple[list[QueueState], list[dlq.DeadMessage]]:
    """Every queue's state and (when asked) the dead letters of the dead-letter queues
    that exist (a passive get on a missing queue would close the channel)."""
    async with broker(state) as connection:
        states = await queue_states(connection, topology(state))
        if not dead_letters:
            return states, []
        existing = [queue.name for queue in states if queue.kind == "dead" and queue.exists]
        return states, await dlq.list_dead(await connection.channel(), existing, DEAD_LETTERS_SHOWN)


async def replay(state: ApiState, queue: str, message_id: str | None) -> int:
    """Replay the dead letters of `queue` (any name of it), or only the one with this id."""
    queues_meant = dlq.dead_queues(topology(state), queue)
    async with broker(state) as connection:
        publisher = await Publisher.open(connection, confirm_timeout=state.settings.confirm_timeout)
        return await dlq.replay_dead(
            await connection.channel(), publisher, queues_meant, message_ids={message_id} if message_id else None
        )


async def purge(state: ApiState, queue: str) -> int:
    queues_meant = dlq.dead_queues(topology(state), queue)
    async with broker(state) as connection:
        return await dlq.purge_dead(await connection.channel(), queues_meant)
