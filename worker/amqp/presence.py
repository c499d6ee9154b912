"""Whether queues and exchanges exist, by passive declares (nothing is created).

Clients that do not own the topology (an external product, worker.sdk) check it before
consuming: publishing to a missing exchange closes the channel, and a missing queue
means the service that declares it has not started yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiormq.exceptions
from aio_pika.abc import AbstractConnection


async def missing(connection: AbstractConnection, *, queues: Sequence[str], exchanges: Sequence[str]) -> list[str]:
    """The names of those queues and exchanges that do not exist (empty: all do)."""
    absent: list[str] = []
    channel = await connection.channel()
    checks = [(name, True) for name in queues] + [(name, False) for name in exchanges]
    for name, is_queue in checks:
        try:
            if is_queue:
                await channel.declare_queue(name, passive=True)
            else:
                await channel.declare_exchange(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            absent.append(name)
            channel = await connection.channel()  # a failed passive declare closes the channel
    await channel.close()
    return absent
