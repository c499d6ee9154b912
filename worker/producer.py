"""The thin producer: how upstream services publish a deletion request.

    request_id = await publish_deletion(amqp_url, project_key="...", identities=[("userId", "42")])

The message is validated against the same schema the worker uses, published persistent
with publisher confirms, and the call returns only once the broker has it. If the broker
is unreachable or refuses the message, the call raises: it never fails silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from schemas import DeletionRequest, Identity, Namespace
from schemas.wire import request_message as encode_request
from worker.amqp import Connection, Outgoing, Publisher, Topology, connect


def build_request(
    project_key: str,
    identities: Sequence[tuple[str, str]],
    *,
    request_id: str | None = None,
    action: str = "delete_user_data",
    dataset_id: str = "ALL",
    start_at: int | None = None,
    description: str = "",
    display_name: str = "",
    reference_id: str | None = None,
) -> DeletionRequest:
    return DeletionRequest.model_validate(
        {
            "requestId": request_id or str(uuid.uuid4()),
            "projectKey": project_key,
            "identities": [Identity(namespace=Namespace(code=ns), id=value) for ns, value in identities],
            "action": action,
            "datasetId": dataset_id,
            "startAt": start_at,
            "description": description,
            "displayName": display_name,
            "referenceId": reference_id,
        }
    )


def request_message(request: DeletionRequest, queue: str) -> Outgoing:
    return Outgoing(routing_key=queue, body=encode_request(request), message_id=request.request_id)


class Producer:
    """A connection kept open for many publishes (a service publishing steadily):

    async with Producer(amqp_url) as producer:
        await producer.publish([request, ...])
    """

    def __init__(self, amqp_url: str, prefix: str = "deletion") -> None:
        self.amqp_url = amqp_url
        self.queue = Topology(prefix, ()).requests.main
        self._connection: Connection | None = None
        self._publisher: Publisher | None = None

    async def __aenter__(self) -> Producer:
        self._connection = await connect(self.amqp_url, name="deletion-worker producer")
        self._publisher = await Publisher.open(self._connection)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def publish(self, requests: Sequence[DeletionRequest]) -> None:
        """All confirms outstanding at once; returns when the broker has every message."""
        assert self._publisher is not None, "use `async with Producer(...)`"
        await self._publisher.publish([request_message(request, self.queue) for request in requests])


async def publish_requests(amqp_url: str, requests: Sequence[DeletionRequest], prefix: str = "deletion") -> None:
    """Publish many requests on one connection, all confirms outstanding at once."""
    async with Producer(amqp_url, prefix) as producer:
        await producer.publish(requests)


async def publish_deletion(
    amqp_url: str,
    project_key: str,
    identities: Sequence[tuple[str, str]],
    *,
    prefix: str = "deletion",
    **fields: object,
) -> str:
    """Publish one deletion request; returns its request id."""
    request = build_request(project_key, identities, **fields)  # type: ignore[arg-type]
    await publish_requests(amqp_url, [request], prefix=prefix)
    return request.request_id
