"""Which role a `--role` name builds, and with which settings: one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from worker.amqp import Topology
from worker.due_dates import DuePolicy
from worker.handlers.registry import build_handler
from worker.products import ProductsFile
from worker.retry import RetryPolicy
from worker.roles.acks import AcksRole
from worker.roles.base import Role
from worker.roles.consuming import ConsumerOptions
from worker.roles.dispatch import DispatchRole
from worker.roles.events import EventRelayRole
from worker.roles.intake import IntakeRole
from worker.roles.maintenance import MaintenanceRole
from worker.roles.notify import NotifyRole
from worker.roles.product import ProductRole
from worker.roles.reconciler import ReconcilerRole
from worker.roles.relay import TaskRelay
from worker.roles.spec import RoleKind, RoleSpec
from worker.settings import Settings
from worker.store.jobs import JobSizing
from worker.store.webhook_fanout import enqueue_deliveries


@dataclass(frozen=True)
class BuildContext:
    settings: Settings
    products: ProductsFile
    pool: asyncpg.Pool
    topology: Topology

    async def probe_database(self) -> None:
        async with self.pool.acquire(timeout=5) as connection:
            await connection.fetchval("SELECT 1")

    async def connect_database(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.settings.database_url, timeout=10)

    def consumer_options(self, window_max: int | None = None) -> ConsumerOptions:
        settings = self.settings
        return ConsumerOptions(
            retry=RetryPolicy.from_settings(settings),
            batch_size=settings.batch_size,
            batch_max_bytes=settings.batch_max_bytes,
            batch_wait_ms=settings.batch_wait_ms,
            window_max=window_max or settings.prefetch,
            window_bytes=settings.consumer_max_bytes,
            unavailable_hold_seconds=settings.unavailable_hold,
            refresh_after_deliveries=max(1, settings.delivery_limit // 2),
        )

    def sizing(self) -> JobSizing:
        return JobSizing(chunk_size=self.settings.chunk_size, task_max_bytes=self.settings.task_max_bytes)


def _intake(context: BuildContext, _spec: RoleSpec) -> Role:
    settings = context.settings
    return IntakeRole(
        context.topology.requests,
        context.consumer_options(),
        pool=context.pool,
        probe=context.probe_database,
        products=context.products.names,
        notify_channel=context.topology.due_channel,
        max_bytes=settings.max_message_bytes,
        max_identities=settings.max_identities,
        sizing=context.sizing(),
        due=DuePolicy(settings),
        allow_private_callbacks=settings.webhook_allow_private,
    )


def _acks(context: BuildContext, _spec: RoleSpec) -> Role:
    return AcksRole(context.topology.acks, context.consumer_options(), pool=context.pool, probe=context.probe_database)


def _product(context: BuildContext, spec: RoleSpec) -> Role:
    settings = context.settings
    assert spec.product is not None
    # A couple of tasks per handler slot, and never more than the byte budget holds.
    window = min(settings.prefetch, 2 * settings.handler_concurrency)
    window = max(1, min(window, settings.consumer_max_bytes // settings.task_max_bytes))
    return ProductRole(
        context.topology.product(spec.product),
        context.consumer_options(window_max=window),
        pool=context.pool,
        product=spec.product,
        handler=build_handler(context.products, spec.product, settings),
        acks_queue=context.topology.acks.main,
        timeout=settings.handler_timeout,
        concurrency=settings.handler_concurrency,
    )


def _dispatch(context: BuildContext, _spec: RoleSpec) -> Role:
    settings = context.settings
    return DispatchRole(
        context.pool,
        TaskRelay(context.pool, context.topology),
        context.connect_database,
        products=context.products.names,
        batch=settings.dispatch_batch,
        max_identities=settings.dispatch_max_identities,
        chunk_size=settings.chunk_size,
        task_max_items=settings.task_max_items,
        task_max_bytes=settings.task_max_bytes,
        interval=settings.dispatch_interval,
        lease_seconds=settings.outbox_lease,
    )


def _maintenance(context: BuildContext, _spec: RoleSpec) -> Role:
    settings = context.settings
    return MaintenanceRole(
        context.pool,
        hash_key=settings.identity_hash_key.get_secret_value().encode(),
        retention=settings.identity_retention,
        step=settings.retention_step,
        interval=settings.maintenance_interval,
        at_risk_margin=settings.due_at_risk_margin,
    )


def _reconciler(context: BuildContext, _spec: RoleSpec) -> Role:
    settings = context.settings
    return ReconcilerRole(
        context.pool,
        stuck_after=settings.stuck_after,
        sweep_page_size=settings.sweep_page,
        interval=settings.reconcile_interval,
    )


def _events(context: BuildContext, _spec: RoleSpec) -> Role:
    settings = context.settings
    return EventRelayRole(
        context.pool,
        context.topology,
        interval=settings.events_interval,
        lease_seconds=settings.outbox_lease,
        publish_types=settings.event_publish_patterns,
        hooks=[enqueue_deliveries],  # webhook deliveries, made once per event (worker.roles.notify)
    )


def _notify(context: BuildContext, _spec: RoleSpec) -> Role:
    # Replays are small and rare; a small window keeps the role's memory for deliveries.
    return NotifyRole(
        context.topology.webhooks,
        context.consumer_options(window_max=100),
        pool=context.pool,
        probe=context.probe_database,
        settings=context.settings,
    )


ROLE_BUILDERS: dict[RoleKind, Callable[[BuildContext, RoleSpec], Role]] = {
    "intake": _intake,
    "acks": _acks,
    "product": _product,
    "dispatch": _dispatch,
    "maintenance": _maintenance,
    "reconciler": _reconciler,
    "events": _events,
    "notify": _notify,
}


def build_roles(context: BuildContext, specs: list[RoleSpec]) -> list[Role]:
    return [ROLE_BUILDERS[spec.kind](context, spec) for spec in specs]
