"""Connections to RabbitMQ, and what counts as losing one.

Connections here are plain (not aio-pika's "robust" kind): the worker's supervisor
reconnects and re-creates channels and consumers itself, so that after a broker restart
it is certain every consumer is back (robust connections have come back with none).

Failover between the nodes of a cluster is done here, at each (re)connect: the addresses
are tried in the order given until one answers. aio-pika's robust connection would only
ever reconnect to the one URL it was opened with, so a node that stays down would hold
every client off a cluster that still has a quorum.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPConnectionError, AMQPError, ChannelInvalidStateError, DeliveryError

log = structlog.get_logger(__name__)

Connection = AbstractConnection
Channel = AbstractChannel
# Connecting failed (refused, authentication, handshake): the broker is not reachable.
BrokerConnectionError = AMQPConnectionError


def broker_addresses(urls: str | Sequence[str]) -> list[str]:
    """One URL, several separated by commas, or a sequence of them: the list to try."""
    items = urls.split(",") if isinstance(urls, str) else urls
    addresses = [url.strip() for url in items if url.strip()]
    if not addresses:
        raise ValueError("no broker address given")
    return addresses


def where(url: str) -> str:
    """host:port of a broker URL, for logs (never the credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


async def connect(urls: str | Sequence[str], timeout: float = 10.0, name: str = "deletion-worker") -> Connection:
    """The first of `urls` that accepts a connection (each given `timeout` seconds); when
    none does, the last one's error, so callers handle one node down and all down alike."""
    addresses = broker_addresses(urls)
    for index, url in enumerate(addresses):
        try:
            return await aio_pika.connect(url, timeout=timeout, client_properties={"connection_name": name})
        except (AMQPConnectionError, OSError, TimeoutError) as error:
            if index == len(addresses) - 1:
                raise
            log.warning("broker_node_unreachable", broker=where(url), error=type(error).__name__, next=index + 1)
    raise AssertionError("unreachable: the loop returns or raises")


class SessionStuckError(Exception):
    """Publishing on this channel stopped working though the connection is up: only a new
    session (connection, channels and the broker's per-channel queue state) can tell
    whether it works again."""


class ConfirmTimeoutError(SessionStuckError, TimeoutError):
    """The broker confirmed nothing of a publish for the publisher's confirm timeout: the
    channel is treated as lost (a new session publishes again), so that a wedged channel
    or a long broker alarm cannot hold a role's work for ever."""


def is_broker_failure(error: BaseException) -> bool:
    """The channel or connection failed (as opposed to one message being refused): the
    work in hand can only be finished on a new session. Publishing on a channel that
    closed underneath (its node died) is one too, and so is one that stopped confirming."""
    if isinstance(error, (ChannelInvalidStateError, SessionStuckError)):
        return True
    return isinstance(error, AMQPError) and not isinstance(error, DeliveryError)
