"""A consuming role that takes deliveries in batches and settles every one explicitly.

A batch handler returns one disposition per delivery:
  Done        the work is committed: ack;
  DeadLetter  cannot ever succeed (bad JSON, wrong schema, over limits): publish to X.dead
              with the reason in a header, then ack;
  Retry       transient: publish to a retry tier with a backoff delay (to X.dead once the
              attempts are used up), then ack.
Deliveries are acked only after the database commit and after any dead-letter or retry
copy is confirmed by the broker, with one `multiple` ack per batch.

When the handler raises, the batch is handled by its failure class (worker.errors):
UNAVAILABLE pauses the consumer and keeps the batch until the database answers (handing
everything back if that takes longer than DELETION_UNAVAILABLE_HOLD); CONTENTION is
retried in place a few times; RECURRING (and CONTENTION that persists) splits the batch
in halves, down to single messages that go to the retry tiers; NEVER_RETRY handles each
delivery on its own, so that one poisonous message cannot hold back the rest.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from worker import metrics, tracing
from worker.aio import sleep_unless
from worker.amqp import Delivery, QueueNames, is_broker_failure
from worker.errors import FailureClass, classify, describe, describe_validation_error
from worker.retry import RECONNECT_POLICY
from worker.roles.base import Session
from worker.roles.consuming import ConsumerOptions, QueueRole

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
Probe = Callable[[], Awaitable[None]]


def parse_body(model: type[ModelT], body: bytes) -> ModelT | DeadLetter:
    """Validate a message body, or say (without quoting it) why it is unusable."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors(include_input=False)):
            return DeadLetter("json: body is not valid JSON")
        return DeadLetter(describe_validation_error(error))


class BatchConsumer(QueueRole):
    """Subclasses implement `handle`; `probe` says whether what it needs is reachable."""

    def __init__(self, name: str, queue: QueueNames, options: ConsumerOptions, probe: Probe) -> None:
        super().__init__(name, queue, options)
        self.probe = probe

    @abstractmethod
    async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
        """Process a batch; return one disposition per delivery, in order."""

    async def consume_loop(self, session: Session, stopping: asyncio.Event) -> None:
        while await self.wait_for_delivery(session, stopping):
            if self.options.batch_wait_ms > 0 and len(self.inbox) < self.options.batch_size:
                await asyncio.sleep(self.options.batch_wait_ms / 1000)
            batch = self.take(self.options.batch_size, self.options.batch_max_bytes)
            self.state.busy()
            metrics.BATCH_SIZE.labels(self.queue.main).observe(len(batch))
            started = time.perf_counter()
            with tracing.batch_span(self.queue.main, batch):
                await self._process(batch, session, stopping)
            metrics.BATCH_DURATION.labels(self.queue.main).observe(time.perf_counter() - started)
            self.state.settled(len(batch))
            await self.adapt_window()

    async def _process(self, batch: list[Delivery], session: Session, stopping: asyncio.Event) -> None:
        contention = 0
        while True:
            try:
                dispositions = await self.handle(batch)
            except Exception as error:
                if is_broker_failure(error):
                    raise
                failure = classify(error)
                if failure is FailureClass.UNAVAILABLE:
                    if await self._wait_until_available(batch, error, session, stopping):
                        continue
                    return  # handed back
                if failure is FailureClass.CONTENTION and contention < self.options.contention_attempts:
                    contention += 1
                    log.warning("batch_contention", queue=self.queue.main, size=len(batch), error=describe(error))
                    await asyncio.sleep(self.options.retry.delay_ms(contention) / 1000)
                    continue
                await self._fail(batch, failure, error, session, stopping)
                return
            await self._settle(batch, dispositions)
            return

    async def _fail(
        self, batch: list[Delivery], failure: FailureClass, error: Exception, session: Session, stopping: asyncio.Event
    ) -> None:
        if len(batch) == 1:
            if failure is FailureClass.NEVER_RETRY:
                log.error("message_failed", queue=self.queue.main, error=describe(error), exc_info=error)
                await self._settle(batch, [DeadLetter(f"processing failed: {describe(error)}")])
            else:
                await self._settle(batch, [Retry(describe(error))])
            return
        if failure is FailureClass.NEVER_RETRY:
            log.warning("batch_failed_isolating", queue=self.queue.main, size=len(batch), error=describe(error))
            for delivery in batch:
                await self._process([delivery], session, stopping)
            return
        # The same batch would fail the same way again (too big for a resource): halves.
        log.warning("batch_split", queue=self.queue.main, size=len(batch), failure=failure, error=describe(error))
        half = len(batch) // 2
        await self._process(batch[:half], session, stopping)
        await self._process(batch[half:], session, stopping)

    async def _settle(self, batch: Sequence[Delivery], dispositions: Sequence[Disposition]) -> None:
        if len(dispositions) != len(batch):
            raise RuntimeError(f"handler returned {len(dispositions)} dispositions for {len(batch)} deliveries")
        copies = [
            self.retry_copy(delivery, disposition.reason)
            if isinstance(disposition, Retry)
            else self.dead_copy(delivery, disposition.reason)
            for delivery, disposition in zip(batch, dispositions, strict=True)
            if not isinstance(disposition, Done)
        ]
        assert self._session is not None
        await self._session.publisher.publish(copies)
        await self.ack(batch)

    async def _wait_until_available(
        self, batch: list[Delivery], error: Exception, session: Session, stopping: asyncio.Event
    ) -> bool:
        """Hold the batch and pause consuming until the dependency answers: True to try the
        batch again, False when it was handed back (held too long, or stopping)."""
        log.warning("dependency_unavailable", role=self.name, held=len(batch), error=describe(error))
        self.state.waiting("database")
        await self.pause_consuming()
        deadline = time.monotonic() + self.options.unavailable_hold_seconds
        attempt = 0
        available = False
        handed_back = False
        while not session.lost.is_set():
            attempt += 1
            if await sleep_unless(stopping, RECONNECT_POLICY.delay_ms(attempt) / 1000):
                break
            try:
                await self.probe()
            except Exception as probe_error:  # noqa: BLE001 - classified: still down, or something else
                if classify(probe_error) is not FailureClass.UNAVAILABLE:
                    available = True
            else:
                available = True
            if available:
                break
            if not handed_back and time.monotonic() > deadline:
                log.warning("holding_too_long_handing_back", role=self.name, count=len(batch) + len(self.inbox))
                await self.hand_back([*batch, *self.take_inbox()], "unavailable")
                handed_back = True
        if not available and not handed_back and not session.lost.is_set():
            await self.hand_back([*batch, *self.take_inbox()], "stop")  # stopping during the outage
            handed_back = True
        self.state.waiting(None)
        if available and not stopping.is_set() and not session.lost.is_set():
            log.info("dependency_available", role=self.name, waited_attempts=attempt)
            await self.resume_consuming()
        return available and not handed_back
