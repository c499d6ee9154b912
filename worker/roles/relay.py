"""Publishes the task outbox: each plan's items read back from Postgres, one message per
product, and the outbox row deleted once the broker confirmed them all.

Plans are published a group at a time, at most PUBLISH_WINDOW_BYTES in flight, so the
dispatcher's memory does not grow with the jobs it claimed. A plan published twice (its
publisher died after the broker confirmed, before the row was deleted) is harmless: a
product deletes the same identities again and its second acknowledgement matches no
waiting chunk.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import structlog

from schemas.wire import task_items, task_message
from worker.amqp import Outgoing, Publisher, Topology
from worker.errors import describe
from worker.store.outbox import OutboxPlan, plan_items, published

log = structlog.get_logger(__name__)

PUBLISH_WINDOW_BYTES = 16 * 1024 * 1024


class TaskRelay:
    def __init__(self, pool: asyncpg.Pool, topology: Topology, window_bytes: int = PUBLISH_WINDOW_BYTES) -> None:
        self.pool = pool
        self.topology = topology
        self.window_bytes = window_bytes
        self.published_tasks = 0
        # Plans handed to publish() whose tasks the broker has not all confirmed (its node
        # died mid-publish): the dispatcher publishes them again on its next session rather
        # than leave their jobs waiting out the outbox lease (a minute, seen in the cluster test).
        self.unsent: dict[uuid.UUID, OutboxPlan] = {}

    async def publish(self, plans: Sequence[OutboxPlan], publisher: Publisher) -> int:
        """Publish every plan; returns how many task messages the broker confirmed. A plan
        whose messages were all confirmed leaves the outbox; one with a refused message
        stays (its lease runs out and it is tried again), without holding the others back."""
        self.remember(plans)
        window: list[tuple[uuid.UUID, list[Outgoing]]] = []
        in_flight = 0
        sent = 0
        for plan in plans:
            async with self.pool.acquire() as connection:
                content = await plan_items(connection, plan)
            if not content.items:  # its jobs were deleted since: nothing to send
                window.append((plan.plan_id, []))
                continue
            encoded = task_items(content.items)
            messages = [
                Outgoing(
                    exchange=self.topology.products_exchange,
                    routing_key=product,
                    body=task_message(str(task_id), product, encoded, content.dry_run),
                    message_id=str(task_id),
                    queue_label=self.topology.product(product).main,
                )
                for product, task_id in plan.task_ids.items()
            ]
            window.append((plan.plan_id, messages))
            in_flight += len(encoded) * len(messages)
            if in_flight >= self.window_bytes:
                sent += await self._flush(window, publisher)
                window, in_flight = [], 0
        sent += await self._flush(window, publisher)
        self.published_tasks += sent
        return sent

    def remember(self, plans: Sequence[OutboxPlan]) -> None:
        """Count these plans as unsent until their tasks are confirmed: called before the
        transaction that records them commits, so that a session cancelled between the
        commit and the publish cannot leave them to the lease. (A plan whose transaction
        rolled back has no items: publishing it sends nothing.)"""
        self.unsent.update((plan.plan_id, plan) for plan in plans)

    def take_unsent(self) -> list[OutboxPlan]:
        plans = list(self.unsent.values())
        self.unsent.clear()
        return plans

    async def _flush(self, window: list[tuple[uuid.UUID, list[Outgoing]]], publisher: Publisher) -> int:
        messages = [message for _, plan_messages in window for message in plan_messages]
        outcomes = await publisher.publish_each(messages)
        done: list[uuid.UUID] = []
        start = 0
        for plan_id, plan_messages in window:
            failures = [outcome for outcome in outcomes[start : start + len(plan_messages)] if outcome is not None]
            start += len(plan_messages)
            if failures:
                log.warning("outbox_plan_refused", plan_id=str(plan_id), error=describe(failures[0]))
            else:
                done.append(plan_id)
        if done:
            async with self.pool.acquire() as connection:
                await published(connection, done)
            for plan_id in done:
                self.unsent.pop(plan_id, None)
        return len(messages)
