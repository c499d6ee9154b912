"""Connections to RabbitMQ, and what counts as losing one.

Connections here are plain (not aio-pika's "robust" kind): the worker's supervisor
reconnects and re-creates channels and consumers itself, so that after a broker restart
it is certain every consumer is back (robust connections have come back with none).
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPConnectionError, AMQPError, DeliveryError

Connection = AbstractConnection
Channel = AbstractChannel
# Connecting failed (refused, authentication, handshake): the broker is not reachable.
BrokerConnectionError = AMQPConnectionError


async def connect(url: str, timeout: float = 10.0, name: str = "deletion-worker") -> Connection:
    return await aio_pika.connect(url, timeout=timeout, client_properties={"connection_name": name})


def is_broker_failure(error: BaseException) -> bool:
    """The channel or connection failed (as opposed to one message being refused): the
    work in hand can only be finished on a new session."""
    return isinstance(error, AMQPError) and not isinstance(error, DeliveryError)
