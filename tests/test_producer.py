"""The thin producer: validated, confirmed, and loud when it cannot deliver."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import aio_pika
import pytest
from aiormq.exceptions import PublishError
from pydantic import ValidationError

from tests.support import declare_topology
from worker.producer import build_request, publish_deletion, publish_requests
from worker.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_publish_deletion_delivers_a_valid_persistent_message(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("")
    await declare_topology(settings)
    request_id = await publish_deletion(
        settings.amqp_url,
        "3sWXSsqHgSKnE87YkNJK",
        [("email", "poul.anderson@example.com")],
        prefix=settings.topology_prefix,
        start_at=1623954600000,
        description="Cleanup identities required by Jira request 12345.",
    )
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{settings.topology_prefix}.requests", ensure=False)
        message = await queue.get(no_ack=True)
        assert message is not None
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.message_id == request_id
        body = json.loads(message.body)
        assert body["requestId"] == request_id
        assert body["identities"] == [{"namespace": {"code": "email"}, "id": "poul.anderson@example.com"}]
        assert body["startAt"] == 1623954600000
        for name in (f"{settings.topology_prefix}.{suffix}" for suffix in ("requests", "acks")):
            for queue_name in (name, f"{name}.retry", f"{name}.dead"):
                await channel.queue_delete(queue_name)
        await channel.exchange_delete(f"{settings.topology_prefix}.products")
    finally:
        await connection.close()


async def test_publish_fails_loudly_when_the_broker_is_unreachable() -> None:
    request = build_request("k", [("userId", "1")])
    with pytest.raises((ConnectionError, OSError)):
        await publish_requests(f"amqp://guest:guest@127.0.0.1:{free_port()}/", [request])


async def test_publish_fails_loudly_when_the_queue_does_not_exist(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("")  # its topology was never declared
    with pytest.raises(PublishError):
        await publish_requests(
            settings.amqp_url, [build_request("k", [("userId", "1")])], prefix=settings.topology_prefix
        )


def test_invalid_request_is_refused_before_publishing() -> None:
    with pytest.raises(ValidationError):
        build_request("k", [])
