"""The thin producer: how upstream services publish a deletion request.

    request_id = await publish_deletion(amqp_url, project_key="...", identities=[("userId", "42")])

The message is validated against the same schema the worker uses, published persistent
with publisher confirms, and the call returns only once the broker has it. If the broker
is unreachable or refuses the message, the call raises: it never fails silently.

A service that subscribed to webhooks checks each delivery in one call (raises
WebhookSignatureError on a bad or missing signature, a changed body, or a replay):

    event = verify_webhook(request.headers, raw_body, "whsec_...")
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog

from schemas import DeletionRequest, Identity, Namespace
from schemas.wire import request_message as encode_request
from worker.amqp import Connection, Outgoing, Publisher, PublishRefusedError, Topology, connect, is_broker_failure
from worker.errors import TransientError, describe
from worker.retry import RECONNECT_POLICY
from worker.webhooks.signing import DEFAULT_TOLERANCE_SECONDS, WebhookSignatureError, check_signature

log = structlog.get_logger(__name__)

# Connections a batch is published on before the error is the caller's: with every
# node of a cluster tried on each, three nodes down in turn still leave one attempt.
PUBLISH_ATTEMPTS = 5

__all__ = [
    "Producer",
    "PublishTimeoutError",
    "WebhookSignatureError",
    "build_request",
    "publish_deletion",
    "publish_requests",
    "verify_webhook",
]


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
    regulation: str | None = None,
    due_at: int | None = None,
    callback_urls: Sequence[str] = (),
    dry_run: bool = False,
) -> DeletionRequest:
    optional = {
        "regulation": regulation,
        "dueAt": due_at,
        "callbackUrls": list(callback_urls) or None,
        "dryRun": True if dry_run else None,
    }
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
            # Left out unless given: a consumer of an older release reads the rest alike.
            **{name: value for name, value in optional.items() if value is not None},
        }
    )


def request_message(request: DeletionRequest, queue: str) -> Outgoing:
    return Outgoing(routing_key=queue, body=encode_request(request), message_id=request.request_id)


class PublishTimeoutError(TransientError):
    """The broker did not confirm a publish in time: it is blocking publishers (a memory
    or disk alarm) or went silent. Some of the batch may have arrived; publishing it again
    is safe (a request id is one job)."""


class Producer:
    """A connection kept open for many publishes (a service publishing steadily):

    async with Producer(amqp_url) as producer:
        await producer.publish([request, ...])
    """

    def __init__(
        self, amqp_url: str | Sequence[str], prefix: str = "deletion", *, confirm_timeout: float = 300.0
    ) -> None:
        # Several addresses (a sequence, or one string with commas): the nodes of a
        # cluster, tried in order until one accepts the connection.
        self.amqp_url = amqp_url
        # How long one publish waits for the broker's confirms: a broker under a memory or
        # disk alarm blocks publishers for as long as the alarm lasts.
        self.confirm_timeout = confirm_timeout
        self.queue = Topology(prefix, ()).requests.main
        self._connection: Connection | None = None
        self._publisher: Publisher | None = None
        self._entered = False

    async def __aenter__(self) -> Producer:
        await self._open()
        self._entered = True
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _open(self) -> None:
        self._connection = await connect(self.amqp_url, name="deletion-worker producer")
        # The producer bounds each publish itself (confirm_timeout, PublishTimeoutError).
        self._publisher = await Publisher.open(self._connection, confirm_timeout=None)

    async def publish(self, requests: Sequence[DeletionRequest]) -> None:
        """All confirms outstanding at once; returns when the broker has every message.

        When the connection is lost (its node died) or the broker refuses a message, the
        whole batch is published again on a new connection (to the next node that
        answers), a bounded number of times: some of it may then reach the queue twice,
        which the service absorbs (a request id is one job). Under a broker alarm this
        waits until the alarm clears, or raises PublishTimeoutError after
        `confirm_timeout` seconds (publish again later: the batch may have arrived in part).
        """
        assert self._entered, "use `async with Producer(...)`"
        messages = [request_message(request, self.queue) for request in requests]
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                if self._publisher is None:
                    await self._open()
                assert self._publisher is not None
                await asyncio.wait_for(self._publisher.publish(messages), self.confirm_timeout)
            except TimeoutError:
                await self._drop()
                raise PublishTimeoutError(f"no confirms within {self.confirm_timeout} s (a broker alarm?)") from None
            except Exception as error:
                # A nack (PublishRefusedError) is retried too: a quorum queue electing a new
                # leader refuses what it is sent for a moment (seen after a leader's kill -9).
                retried = is_broker_failure(error) or isinstance(error, (OSError, PublishRefusedError))
                if attempt == PUBLISH_ATTEMPTS or not retried:
                    raise
                log.warning("producer_reconnecting", error=describe(error), attempt=attempt)
                await self._drop()
                await asyncio.sleep(RECONNECT_POLICY.delay_ms(attempt) / 1000)
            else:
                return

    async def _drop(self) -> None:
        connection, self._connection, self._publisher = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)


async def publish_requests(
    amqp_url: str | Sequence[str], requests: Sequence[DeletionRequest], prefix: str = "deletion"
) -> None:
    """Publish many requests on one connection, all confirms outstanding at once."""
    async with Producer(amqp_url, prefix) as producer:
        await producer.publish(requests)


async def publish_deletion(
    amqp_url: str | Sequence[str],
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


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secret: str | bytes | Sequence[str | bytes],
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """Check a webhook delivery and return its event (a dict shaped like
    schemas.events.LifecycleEvent), or raise WebhookSignatureError: no signature made
    with `secret` (or with any of several secrets, while a receiver rotates), a changed
    body, or a timestamp more than `tolerance` seconds away (a replay). Pass the raw body
    bytes, before any JSON parsing. Deduplicate events by `eventId`."""
    held = [secret] if isinstance(secret, (str, bytes)) else list(secret)
    check_signature(headers, body, held, tolerance)
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookSignatureError("the body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookSignatureError("the body is not a JSON object")
    return event
