"""A consumer that takes deliveries in batches and settles every one of them explicitly.

A batch handler returns one disposition per delivery:
  Done        the work is committed: ack;
  DeadLetter  cannot ever succeed (bad JSON, wrong schema, over limits): publish to X.dead
              with the reason in a header, then ack;
  Retry       transient (a product answered 5xx): publish to X.retry with a backoff delay,
              or to X.dead once the attempts are used up, then ack.
Deliveries are acked only after the database commit and after any dead-letter or retry
copy is confirmed by the broker, with one `multiple` ack per batch.

If the handler raises an error that looks transient (database unreachable), the batch
is kept unacked and tried again after a backoff; if it raises anything else, each
delivery is handled on its own so that one poisonous message cannot hold back the rest.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiormq.abc
import structlog
from aio_pika.abc import AbstractChannel
from pydantic import BaseModel, ValidationError

from worker import metrics
from worker.broker import Outgoing, Publisher
from worker.db import is_transient
from worker.errors import describe, describe_validation_error
from worker.retry import RetryPolicy
from worker.topology import ATTEMPT_HEADER, DEAD_AT_HEADER, ERROR_HEADER, ORIGIN_HEADER, QueueNames

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class DeadLetter:
    reason: str


@dataclass(frozen=True)
class Retry:
    reason: str


Disposition = Done | DeadLetter | Retry
DONE = Done()

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(model: type[ModelT], body: bytes) -> ModelT | DeadLetter:
    """Validate a message body, or say (without quoting it) why it is unusable."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors(include_input=False)):
            return DeadLetter("json: body is not valid JSON")
        return DeadLetter(describe_validation_error(error))


# Deliveries are consumed at the aiormq level (aio-pika's transport): building aio-pika's
# IncomingMessage for every delivery was a tenth of the worker's CPU time.
Delivery = aiormq.abc.DeliveredMessage


def headers_of(message: Delivery) -> dict[str, Any]:
    return dict(message.header.properties.headers or {})


def message_id_of(message: Delivery) -> str | None:
    return message.header.properties.message_id


def attempt_of(message: Delivery) -> int:
    """How many times this message was tried before (0 on the first delivery)."""
    value = headers_of(message).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


@dataclass
class ConsumerStats:
    consumed: int = 0
    dead_lettered: int = 0
    retried: int = 0
    batches: int = 0


@dataclass(frozen=True)
class ConsumerOptions:
    retry: RetryPolicy
    batch_size: int
    batch_wait_ms: int


class BatchConsumer(ABC):
    """Subclasses implement `handle`; `run` does the consuming, batching and settling."""

    def __init__(self, names: QueueNames, publisher: Publisher, options: ConsumerOptions) -> None:
        self.names = names
        self.publisher = publisher
        self.retry = options.retry
        self.batch_size = options.batch_size
        self.batch_wait = options.batch_wait_ms / 1000
        self.stats = ConsumerStats()
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._consumer_tag: str | None = None
        self._busy = False

    @abstractmethod
    async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
        """Process a batch; return one disposition per delivery, in order."""

    # -- consuming -------------------------------------------------------------------

    async def start(self, channel: AbstractChannel) -> None:
        self._channel = await channel.get_underlay_channel()
        consume_ok = await self._channel.basic_consume(self.names.main, self._receive)
        self._consumer_tag = consume_ok.consumer_tag
        metrics.CONSUMERS_ACTIVE.labels(self.names.main).set(1)

    async def _receive(self, message: Delivery) -> None:
        self._inbox.put_nowait(message)

    async def stop_consuming(self) -> None:
        """Ask the broker for no more deliveries; what is buffered here is returned
        unacked when the channel closes, and redelivered elsewhere."""
        metrics.CONSUMERS_ACTIVE.labels(self.names.main).set(0)
        if self._channel is not None and self._consumer_tag is not None:
            try:
                await self._channel.basic_cancel(self._consumer_tag)
            except Exception as error:  # noqa: BLE001 - the channel may already be gone
                log.debug("consumer_cancel_failed", queue=self.names.main, error=describe(error))
        self._consumer_tag = None

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None

    async def run(self, stopping: asyncio.Event) -> None:
        """Take batches until `stopping` is set; the batch in hand is always finished."""
        while not stopping.is_set():
            getter = asyncio.ensure_future(self._inbox.get())
            stopper = asyncio.ensure_future(stopping.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:
                getter.cancel()
                return
            batch = [getter.result()]
            await self._fill(batch)
            self._busy = True
            try:
                await self._process(batch, stopping)
            finally:
                self._busy = False

    async def _fill(self, batch: list[Delivery]) -> None:
        self._drain(batch)
        if len(batch) < self.batch_size and self.batch_wait > 0:
            await asyncio.sleep(self.batch_wait)
            self._drain(batch)

    def _drain(self, batch: list[Delivery]) -> None:
        while len(batch) < self.batch_size and not self._inbox.empty():
            batch.append(self._inbox.get_nowait())

    # -- settling --------------------------------------------------------------------

    async def _process(self, batch: list[Delivery], stopping: asyncio.Event) -> None:
        metrics.BATCH_SIZE.labels(self.names.main).observe(len(batch))
        started = time.perf_counter()
        failures = 0
        while True:
            try:
                dispositions = await self.handle(batch)
                break
            except Exception as error:  # noqa: BLE001 - classified below: transient, or isolate the culprit
                if not is_transient(error):
                    log.warning("batch_failed_isolating", queue=self.names.main, size=len(batch), error=describe(error))
                    dispositions = await self._handle_one_by_one(batch)
                    break
                failures += 1
                delay = self.retry.delay_ms(failures) / 1000
                log.warning(
                    "batch_transient_failure",
                    queue=self.names.main,
                    size=len(batch),
                    error=describe(error),
                    retry_in_s=round(delay, 2),
                )
                if stopping.is_set():
                    return  # leave the batch unacked; the broker gives it to another worker
                await asyncio.sleep(delay)
        await self._settle(batch, dispositions)
        elapsed = time.perf_counter() - started
        metrics.BATCH_DURATION.labels(self.names.main).observe(elapsed)
        log.debug("batch_handled", queue=self.names.main, size=len(batch), seconds=round(elapsed, 4))

    async def _handle_one_by_one(self, batch: list[Delivery]) -> list[Disposition]:
        dispositions: list[Disposition] = []
        for message in batch:
            try:
                dispositions.extend(await self.handle([message]))
            except Exception as error:
                if is_transient(error):
                    dispositions.append(Retry(describe(error)))
                else:
                    log.exception("message_failed", queue=self.names.main, error=describe(error))
                    dispositions.append(DeadLetter(f"processing failed: {describe(error)}"))
        return dispositions

    async def _settle(self, batch: list[Delivery], dispositions: list[Disposition]) -> None:
        if len(dispositions) != len(batch):
            raise RuntimeError(f"handler returned {len(dispositions)} dispositions for {len(batch)} deliveries")
        copies: list[Outgoing] = []
        for message, disposition in zip(batch, dispositions, strict=True):
            if isinstance(disposition, Retry):
                copies.append(self._retry_copy(message, disposition.reason))
            elif isinstance(disposition, DeadLetter):
                copies.append(self._dead_copy(message, disposition.reason))
        await self.publisher.publish(copies)
        # Batches on this channel are settled in delivery order, so one `multiple` ack of
        # the last tag settles exactly this batch.
        last_tag = batch[-1].delivery_tag
        assert self._channel is not None
        assert last_tag is not None
        await self._channel.basic_ack(last_tag, multiple=True)
        self.stats.consumed += len(batch)
        self.stats.batches += 1
        metrics.MESSAGES_CONSUMED.labels(self.names.main).inc(len(batch))
        metrics.HEARTBEAT.set(time.time())

    def _retry_copy(self, message: Delivery, reason: str) -> Outgoing:
        attempt = attempt_of(message) + 1
        if attempt >= self.retry.max_attempts:
            return self._dead_copy(message, f"retries exhausted after {attempt} attempts: {reason}")
        self.stats.retried += 1
        metrics.MESSAGES_RETRIED.labels(self.names.main).inc()
        delay = self.retry.delay_ms(attempt)
        log.info("message_retry", queue=self.names.main, attempt=attempt, delay_ms=delay, reason=reason)
        return Outgoing(
            routing_key=self.names.retry,
            body=message.body,
            headers={**headers_of(message), ATTEMPT_HEADER: attempt, ERROR_HEADER: reason},
            message_id=message_id_of(message),
            expiration_ms=delay,
        )

    def _dead_copy(self, message: Delivery, reason: str) -> Outgoing:
        self.stats.dead_lettered += 1
        metrics.MESSAGES_DEAD_LETTERED.labels(self.names.main, reason.split(":", 1)[0][:40]).inc()
        log.warning(
            "message_dead_lettered",
            queue=self.names.main,
            message_id=message_id_of(message),
            size=len(message.body),
            reason=reason,
        )
        return Outgoing(
            routing_key=self.names.dead,
            body=message.body,
            headers={
                **headers_of(message),
                ERROR_HEADER: reason[:1000],
                ORIGIN_HEADER: self.names.main,
                DEAD_AT_HEADER: int(time.time() * 1000),
            },
            message_id=message_id_of(message),
        )

    @property
    def busy(self) -> bool:
        return self._busy
