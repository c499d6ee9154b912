"""The notify role's delivery loop: claims due webhook deliveries (worker.store.
webhook_deliveries), signs and sends each in a task of its own, and settles the
outcomes in batches.

Bounded: at most `concurrency` calls in flight, `per_endpoint` of them to one endpoint,
each within `timeout` (resolving included). An endpoint that is slow or down holds only
its own slots and backs off on its own, so it never delays another's deliveries. A row
is leased while its call is under way (timeout plus a margin); a process that dies
leaves its rows to be sent again when the lease ends (at least once: receivers
deduplicate by the Deliveries' event id).

Outcomes: 2xx deletes the row; 410 removes the subscription (or drops a callback URL's
rows); any other answer, a time-out or a connection error is retried after a backoff
with full jitter, until the row is DELETION_WEBHOOK_GIVE_UP old: then it goes to the
`<prefix>.webhooks.dead` queue, from which `dlq replay` sends it back to be made again.
A URL refused by the guard, or a delivery that cannot be signed (worker.roles.
notify_signing: a callback of a project without a callback secret, an OpenDSR status
callback without a processor certificate), is dead-lettered at once with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from worker import metrics
from worker.amqp import QueueNames, is_broker_failure
from worker.errors import FailureClass, classify, describe
from worker.retry import RECONNECT_POLICY
from worker.roles.base import RoleState, Session
from worker.roles.notify_outcomes import DeliveryOptions, RoundResults, dead_letter
from worker.roles.notify_signing import DeliverySigner
from worker.store.webhook_deliveries import (
    ClaimedDelivery,
    Retry,
    claim,
    claim_expired,
    drop_gone_target,
    forget_idle_endpoints,
    pending,
    remove,
    settle,
)
from worker.webhooks.sender import Outcome, WebhookSender

log = structlog.get_logger(__name__)

GIVE_UP_EVERY_S = 5.0
GAUGES_EVERY_S = 10.0
FORGET_EVERY_S = 600.0
IDLE_ENDPOINT = timedelta(hours=1)
GIVE_UP_BATCH = 500


class Deliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        signer: DeliverySigner,
        sender: WebhookSender,
        options: DeliveryOptions,
        queues: QueueNames,
        state: RoleState,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.sender = sender
        self.options = options
        self.queues = queues
        self.state = state
        self.counts: Counter[str] = Counter()
        self._tasks: dict[asyncio.Task[Outcome], ClaimedDelivery] = {}
        self._busy: Counter[str] = Counter()
        self._results = RoundResults()
        self._timers: dict[str, float] = {}

    async def run(self, session: Session, stopping: asyncio.Event) -> None:
        failures = 0
        try:
            while not stopping.is_set() and not session.lost.is_set():
                try:
                    await self._round(session, claim_more=True)
                    failures = 0
                    self.state.waiting(None)
                except Exception as error:
                    if is_broker_failure(error):
                        raise
                    failures += 1
                    self._deferred(error, failures)
                    await self._wait(stopping, RECONNECT_POLICY.delay_ms(failures) / 1000)
                    continue
                await self._wait(stopping, self.options.interval)
            if not session.lost.is_set():
                # Finish what is under way (each call ends within its timeout), record it.
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=self.options.timeout + 1)
                with contextlib.suppress(Exception):
                    await self._round(session, claim_more=False)
        finally:
            for task in self._tasks:
                task.cancel()  # their rows' leases run out and they are sent again
            self._tasks.clear()
            self._busy.clear()
            metrics.WEBHOOK_IN_FLIGHT.set(0)

    def _deferred(self, error: Exception, failures: int) -> None:
        failure = classify(error)
        if failure in (FailureClass.UNAVAILABLE, FailureClass.CONTENTION):
            self.state.waiting("database" if failure is FailureClass.UNAVAILABLE else None)
            log.warning("webhook_round_deferred", error=describe(error), failures=failures)
        else:
            log.error("webhook_round_failed", error=describe(error), exc_info=error)

    async def _wait(self, stopping: asyncio.Event, seconds: float) -> None:
        """Until a call ends, `seconds` pass, or the role must stop."""
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait([stop, *self._tasks], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    def _due(self, name: str, every: float) -> bool:
        now = time.monotonic()
        if now - self._timers.get(name, float("-inf")) < every:
            return False
        self._timers[name] = now
        return True

    # -- one round ----------------------------------------------------------------------------

    async def _round(self, session: Session, *, claim_more: bool) -> None:
        self._collect()
        if self._results:
            await self._record(session)
        if claim_more and self._due("give_up", GIVE_UP_EVERY_S):
            await self._give_up(session)
        if self._due("gauges", GAUGES_EVERY_S):
            await self._export_gauges()
        if claim_more:
            await self._claim()
        metrics.WEBHOOK_IN_FLIGHT.set(len(self._tasks))
        if self._tasks:
            self.state.busy()
        else:
            self.state.idle()

    def _collect(self) -> None:
        """Sort the calls that ended by outcome."""
        for task in [task for task in self._tasks if task.done()]:
            delivery = self._tasks.pop(task)
            self._busy[delivery.endpoint] -= 1
            if self._busy[delivery.endpoint] <= 0:
                del self._busy[delivery.endpoint]
            outcome = task.result() if not task.cancelled() else Outcome("retry", "cancelled")
            self._sort(delivery, outcome)

    def _sort(self, delivery: ClaimedDelivery, outcome: Outcome) -> None:
        results = self._results
        if outcome.kind == "delivered":
            results.delivered.append(delivery)
        elif outcome.kind == "gone":
            results.gone.append(delivery)
        elif outcome.kind == "refused":
            results.dead.append((delivery, f"refused: {outcome.detail}"))
        elif datetime.now(UTC) - delivery.created_at >= self.options.give_up:
            reason = f"gave up after {delivery.attempts} attempts; last: {outcome.detail}"
            results.dead.append((delivery, reason))
        else:
            results.retries.append((delivery, outcome.detail))

    async def _record(self, session: Session) -> None:
        results = self._results
        if results.dead:
            await session.publisher.publish([dead_letter(d, reason, self.queues) for d, reason in results.dead])
            for delivery, reason in results.dead:
                log.warning(
                    "webhook_dead_lettered",
                    subscription_id=str(delivery.subscription_id) if delivery.subscription_id else None,
                    endpoint=delivery.endpoint,
                    event_id=delivery.event_id,
                    attempts=delivery.attempts,
                    reason=reason,
                )
            results.dead_published.extend(d for d, _ in results.dead)
            results.dead = []
        retries = [
            Retry(d.id, d.endpoint, self.options.retry.delay_ms(d.attempts) / 1000, error)
            for d, error in results.retries
        ]
        async with self.pool.acquire() as connection:
            for delivery in results.gone:
                await drop_gone_target(connection, delivery)
            await settle(
                connection,
                delivered=results.delivered,
                retries=retries,
                removed=[*results.gone, *results.dead_published],
                endpoint_backoff=self.options.endpoint_backoff,
                answered=tuple(results.gone),
            )
        for delivery in results.gone:
            log.warning(
                "webhook_target_gone",
                subscription_id=str(delivery.subscription_id) if delivery.subscription_id else None,
                endpoint=delivery.endpoint,
                removed="subscription" if delivery.subscription_id else "callback deliveries",
            )
        for delivery, error in results.retries:
            log.info(
                "webhook_retry",
                endpoint=delivery.endpoint,
                event_id=delivery.event_id,
                attempt=delivery.attempts,
                error=error,
            )
        for outcome, items in (
            ("delivered", results.delivered),
            ("retried", results.retries),
            ("gone", results.gone),
            ("dead", results.dead_published),
        ):
            if items:
                metrics.WEBHOOK_DELIVERIES.labels(outcome).inc(len(items))
                self.counts[outcome] += len(items)
        log.info(
            "webhooks_settled",
            delivered=len(results.delivered),
            retried=len(results.retries),
            gone=len(results.gone),
            dead=len(results.dead_published),
        )
        self.state.advanced(len(results))
        self._results = RoundResults()

    async def _give_up(self, session: Session) -> None:
        """Rows past the give-up time that no call is making (an endpoint that has been
        backing off all along): to the dead-letter queue, a batch at a time."""
        async with self.pool.acquire() as connection:
            expired = await claim_expired(connection, self.options.give_up, GIVE_UP_BATCH, self.options.lease_seconds)
        if not expired:
            return
        reason = f"gave up: not delivered within {int(self.options.give_up.total_seconds())} s"
        await session.publisher.publish([dead_letter(d, reason, self.queues) for d in expired])
        async with self.pool.acquire() as connection:
            await remove(connection, [d.id for d in expired])
        metrics.WEBHOOK_DELIVERIES.labels("dead").inc(len(expired))
        self.counts["dead"] += len(expired)
        log.warning("webhooks_given_up", count=len(expired), endpoints=sorted({d.endpoint for d in expired})[:20])

    async def _export_gauges(self) -> None:
        async with self.pool.acquire() as connection:
            count, age = await pending(connection)
            if self._due("forget", FORGET_EVERY_S):
                await forget_idle_endpoints(connection, IDLE_ENDPOINT)
        metrics.WEBHOOK_PENDING.set(count)
        metrics.WEBHOOK_OLDEST_AGE.set(age)

    async def _claim(self) -> None:
        free = self.options.concurrency - len(self._tasks)
        if free <= 0:
            return
        async with self.pool.acquire() as connection:
            claimed = await claim(
                connection,
                limit=free,
                per_endpoint=self.options.per_endpoint,
                busy=dict(self._busy),
                lease_seconds=self.options.lease_seconds,
            )
            ready, refused = await self.signer.prepare(connection, claimed)
        self._results.dead.extend(refused)
        for item in ready:
            delivery = item.delivery
            task = asyncio.create_task(self.sender.send(delivery.url, item.body, item.headers))
            self._tasks[task] = delivery
            self._busy[delivery.endpoint] += 1
