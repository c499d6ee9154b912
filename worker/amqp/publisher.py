"""Publishing with confirms: persistent messages, many confirms outstanding at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiormq.abc
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import DeliveryError
from pamqp import commands as spec

from worker import metrics, tracing
from worker.amqp import _batch as batch_publish
from worker.amqp import _confirms as confirms
from worker.amqp.connection import ConfirmTimeoutError, SessionStuckError
from worker.errors import TransientError
from worker.retry import RetryPolicy

log = structlog.get_logger(__name__)

JSON = "application/json"
PERSISTENT = 2  # AMQP delivery mode: written to disk by the broker


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: to the default exchange (routing key = queue) or a named one."""

    routing_key: str
    body: bytes
    exchange: str = ""
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    expiration_ms: int | None = None
    queue_label: str | None = None  # for metrics; defaults to the routing key
    mandatory: bool = True  # see worker.amqp._batch.Publish


def _properties(item: Outgoing) -> spec.Basic.Properties:
    return spec.Basic.Properties(
        content_type=JSON,
        delivery_mode=PERSISTENT,
        headers=dict(item.headers) or None,
        # The client matches a returned message to its publish by message id.
        message_id=item.message_id or str(uuid.uuid4()),
        expiration=str(item.expiration_ms) if item.expiration_ms is not None else None,
        # No timestamp property: encoding and decoding it cost ~2% of the CPU per message
        # on each side; dead letters carry their own time header.
    )


class PublishRefusedError(TransientError):
    """The broker nacked a message: it did not take responsibility for it."""


class RefusedTooLongError(PublishRefusedError, SessionStuckError):
    """The broker kept nacking messages on this channel for the whole retry window."""


# A nack says the broker did not take the message, for now: a quorum queue refuses what it
# is sent while it elects a new leader (a second or two after its leader's node died).
# Refused messages are sent again, with capped backoff, for up to REFUSED_RETRY_SECONDS.
# Past that the channel itself is suspect: in CI (RabbitMQ 3.10, a three-node cluster) a
# channel opened on a surviving node kept nacking one queue's publishes for minutes after
# its leader's kill -9, while the producer, which reconnects on a nack, got through at
# once. So a refusal that outlasts the window is a broker failure (RefusedTooLongError):
# the session is made again, on a new connection and channels. Sending again is safe:
# every consumer of this service absorbs a duplicate.
REFUSED_RETRY_SECONDS = 10.0
# How long one publish may wait for its confirms, refusals sent again included (None: no
# limit, for a caller that bounds the wait itself, as the producer does).
CONFIRM_TIMEOUT_SECONDS = 120.0
REFUSED_BACKOFF = RetryPolicy(max_attempts=1_000, base_ms=100, cap_ms=2_000)


def _is_nack(result: object) -> bool:
    # aiormq settles a nack as a DeliveryError carrying the Nack frame (a returned message
    # is a DeliveryError too, a PublishError with the Return frame: that one stays as is).
    return isinstance(result, DeliveryError) and isinstance(result.frame, spec.Basic.Nack)


class Publisher:
    """Publishes persistent messages on a confirm channel, many confirms outstanding at once.

    A batch is written to the channel in one piece (`worker.amqp._batch`); where the
    installed aiormq does not allow that, each message goes through aiormq's own
    `basic_publish`, concurrently. Both skip aio-pika's Message objects, which cost a fifth
    of the publishing throughput.
    """

    def __init__(
        self,
        channel: AbstractChannel,
        underlay: aiormq.Channel,
        *,
        batched: bool = True,
        refused_retry_seconds: float = REFUSED_RETRY_SECONDS,
        confirm_timeout: float | None = CONFIRM_TIMEOUT_SECONDS,
    ) -> None:
        self._channel = channel
        self.confirm_timeout = confirm_timeout
        self._underlay = underlay
        self.refused_retry_seconds = refused_retry_seconds
        self._batched = batched and batch_publish.supports(underlay)
        if self._batched:
            confirms.install(underlay)
        metrics.PUBLISHER_BATCHED.set(1 if self._batched else 0)
        if batched and not self._batched:
            log.warning("publishing one message at a time: this aiormq does not allow batched writes")

    @classmethod
    async def open(
        cls,
        connection: AbstractConnection,
        *,
        batched: bool = True,
        refused_retry_seconds: float = REFUSED_RETRY_SECONDS,
        confirm_timeout: float | None = CONFIRM_TIMEOUT_SECONDS,
    ) -> Publisher:
        """`batched=False` publishes one message at a time through aiormq's basic_publish;
        a message the broker keeps refusing is reported after `refused_retry_seconds`."""
        # on_return_raises: an unroutable message (no such queue) is an error, not a silent drop.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        underlay = await channel.get_underlay_channel()
        # The concrete channel: its basic_publish takes `wait`, the abstract one does not say so.
        assert isinstance(underlay, aiormq.Channel)
        return cls(
            channel,
            underlay,
            batched=batched,
            refused_retry_seconds=refused_retry_seconds,
            confirm_timeout=confirm_timeout,
        )

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish all and wait until the broker confirmed every one; raises if any was refused
        (nacked, or returned as unroutable)."""
        failure = next((outcome for outcome in await self.publish_each(messages) if outcome is not None), None)
        if failure is not None:
            raise failure

    async def publish_each(self, messages: Sequence[Outgoing]) -> list[BaseException | None]:
        """Publish all; returns, in order, None for each message the broker confirmed and
        the error for each it did not take (returned as unroutable). Raises when the
        channel failed, or stopped confirming (ConfirmTimeoutError), or kept nacking for
        the whole retry window (RefusedTooLongError): broker failures, for a new session."""
        if not messages:
            return []
        if tracing.enabled():  # off: not even a look at the headers
            traced = tracing.traced_headers([(item.routing_key, item.headers) for item in messages])
            messages = [replace(item, headers=headers) for item, headers in zip(messages, traced, strict=True)]
        try:
            results = await asyncio.wait_for(self._publish_until_taken(messages), self.confirm_timeout)
        except TimeoutError:
            raise ConfirmTimeoutError(f"no confirms within {self.confirm_timeout} s") from None
        refused = sum(1 for result in results if _is_nack(result))
        if refused:
            raise RefusedTooLongError(
                f"the broker refused {refused} message(s) for {self.refused_retry_seconds} s on this channel"
            )
        outcomes: list[BaseException | None] = []
        published: Counter[str] = Counter()
        for item, result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):  # no nack is left here: those raised above
                outcomes.append(result)
            else:
                outcomes.append(None)
                published[item.queue_label or item.routing_key] += 1
        for queue, count in published.items():
            metrics.MESSAGES_PUBLISHED.labels(queue).inc(count)
        return outcomes

    async def _publish_until_taken(self, messages: Sequence[Outgoing]) -> list[batch_publish.Confirmation]:
        """Each message's final answer: the nacked ones are sent again until the broker
        takes them or `refused_retry_seconds` have passed."""
        results = list(await self._publish_once(messages))
        deadline = time.monotonic() + self.refused_retry_seconds
        attempt = 0
        while True:
            refused = [index for index, result in enumerate(results) if _is_nack(result)]
            left = deadline - time.monotonic()
            if not refused or left <= 0:
                return results
            attempt += 1
            delay = min(left, REFUSED_BACKOFF.delay_ms(attempt) / 1000)
            log.warning("publish_refused_sending_again", count=len(refused), attempt=attempt, in_s=round(delay, 2))
            metrics.PUBLISHES_REFUSED.inc(len(refused))
            await asyncio.sleep(delay)
            again = await self._publish_once([messages[index] for index in refused])
            for index, result in zip(refused, again, strict=True):
                results[index] = result

    async def _publish_once(self, messages: Sequence[Outgoing]) -> Sequence[batch_publish.Confirmation]:
        publishes = [
            batch_publish.Publish(item.exchange, item.routing_key, _properties(item), item.body, item.mandatory)
            for item in messages
        ]
        if self._batched:
            return await batch_publish.publish_batch(self._underlay, publishes)
        return await asyncio.gather(*map(self._publish_one, publishes), return_exceptions=True)

    async def _publish_one(self, publish: batch_publish.Publish) -> batch_publish.Confirmation:
        confirmation = await self._underlay.basic_publish(
            publish.body,
            exchange=publish.exchange,
            routing_key=publish.routing_key,
            properties=publish.properties,
            mandatory=publish.mandatory,
            # Not waiting for each frame to be written and drained: the broker's confirm
            # is what counts, and skipping the per-message drain made publishing ~7%
            # cheaper. Memory stays bounded: the caller holds these messages anyway.
            wait=False,
        )
        assert isinstance(confirmation, spec.Basic.Ack), "a confirm channel acks (a nack is raised)"
        return confirmation

    async def close(self) -> None:
        if not self._channel.is_closed:
            await self._channel.close()
