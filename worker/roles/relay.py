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
from worker.store.outbox import OutboxPlan, plan_items, published

log = structlog.get_logger(__name__)

PUBLISH_WINDOW_BYTES = 16 * 1024 * 1024


class TaskRelay:
    def __init__(self, pool: asyncpg.Pool, topology: Topology, window_bytes: int = PUBLISH_WINDOW_BYTES) -> None:
        self.pool = pool
        self.topology = topology
        self.window_bytes = window_bytes
        self.published_tasks = 0

    async def publish(self, plans: Sequence[OutboxPlan], publisher: Publisher) -> int:
        """Publish every plan; returns how many task messages the broker confirmed."""
        pending: list[Outgoing] = []
        plan_ids: list[uuid.UUID] = []
        in_flight = 0
        sent = 0
        for plan in plans:
            async with self.pool.acquire() as connection:
                items = await plan_items(connection, plan)
            plan_ids.append(plan.plan_id)
            if not items:
                continue  # its jobs were deleted since: nothing to send
            encoded = task_items(items)
            for product, task_id in plan.task_ids.items():
                pending.append(
                    Outgoing(
                        exchange=self.topology.products_exchange,
                        routing_key=product,
                        body=task_message(str(task_id), product, encoded),
                        message_id=str(task_id),
                        queue_label=self.topology.product(product).main,
                    )
                )
            in_flight += len(encoded) * len(plan.task_ids)
            if in_flight >= self.window_bytes:
                sent += await self._flush(pending, plan_ids, publisher)
                pending, plan_ids, in_flight = [], [], 0
        sent += await self._flush(pending, plan_ids, publisher)
        self.published_tasks += sent
        return sent

    async def _flush(self, messages: list[Outgoing], plan_ids: list[uuid.UUID], publisher: Publisher) -> int:
        await publisher.publish(messages)
        if plan_ids:
            async with self.pool.acquire() as connection:
                await published(connection, plan_ids)
        return len(messages)
