"""`deletion-worker webhooks add|list|remove|test|rotate|callback-secret`: a project's
webhook subscriptions and its callback secret, for operators.

A secret is printed once, when it is made; only sealed copies are stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import click
import orjson
from rich.table import Table

from worker.cli import common
from worker.errors import NotFoundError, RefusedError, TransientError, UsageError
from worker.settings import Settings
from worker.store.projects import project_ids_by_key
from worker.store.webhooks import (
    SecretOwner,
    Subscription,
    active_sealed_secrets,
    add_secret,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    retire_old_secrets,
    secret_status,
)
from worker.webhooks.crypto import SecretBox
from worker.webhooks.sender import WebhookSender
from worker.webhooks.signing import new_secret, signed_headers
from worker.webhooks.types import check_event_types
from worker.webhooks.urls import resolve_destination

TEST_EVENT_TYPE = "webhook.test"


def _view(subscription: Subscription) -> dict[str, Any]:
    return {
        "webhookId": str(subscription.id),
        "projectId": subscription.project_id,
        "url": subscription.url,
        "eventTypes": subscription.event_types,
        "description": subscription.description,
        "createdAt": subscription.created_at.isoformat(),
        "activeSecrets": subscription.active_secrets,
        "rotationEndsAt": subscription.rotation_ends_at.isoformat() if subscription.rotation_ends_at else None,
    }


def _webhook_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError("WEBHOOK_ID: not a webhook id (see `deletion-worker webhooks list`)") from None


async def _project_id(connection: asyncpg.Connection, project_key: str) -> int:
    found = await project_ids_by_key(connection, [project_key])
    if project_key not in found:
        raise NotFoundError("no project has that key")
    return found[project_key]


async def _subscription(connection: asyncpg.Connection, webhook_id: str) -> Subscription:
    found = await get_subscription(connection, _webhook_id(webhook_id))
    if found is None:
        raise NotFoundError("no webhook has that id")
    return found


async def _check_url(loaded: Settings, url: str) -> None:
    try:
        await resolve_destination(url, allow_private=loaded.webhook_allow_private)
    except TransientError as error:
        raise UsageError(str(error)) from None


@click.group("webhooks")
def webhooks_group() -> None:
    """A project's webhook subscriptions (signed deliveries of its lifecycle events)."""


@webhooks_group.command("add")
@click.option("--project", "project_key", required=True, help="The projectKey whose events are sent.")
@click.option("--url", required=True, help="https:// (or http://) URL, no credentials, a public address.")
@click.option(
    "--event",
    "events",
    multiple=True,
    help="Event type or pattern (job.completed, job.*, product.*.failed); repeatable.",
)
@click.option("--description", default="", help="A note for people.")
def add_command(project_key: str, url: str, events: tuple[str, ...], description: str) -> None:
    """Subscribe URL to the project's events (all of them without --event). Prints the
    subscription with its signing secret: the only time the secret is shown."""
    loaded = common.settings()
    event_types = check_event_types(list(events) or ["*"])
    secret = new_secret()
    sealed = SecretBox.from_settings(loaded).seal(secret)

    async def go(connection: asyncpg.Connection) -> Subscription:
        await _check_url(loaded, url)
        project_id = await _project_id(connection, project_key)
        return await create_subscription(
            connection, project_id, url, event_types, sealed, description=description, created_by="cli"
        )

    created = common.with_database(loaded, go)
    common.echo_json({**_view(created), "secret": secret})


@webhooks_group.command("list")
@click.option("--project", "project_key", required=True, help="The projectKey.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines for scripts.")
def list_command(project_key: str, as_json: bool) -> None:
    """The project's subscriptions (never their secrets)."""
    loaded = common.settings()

    async def go(connection: asyncpg.Connection) -> list[Subscription]:
        return await list_subscriptions(connection, await _project_id(connection, project_key))

    found = common.with_database(loaded, go)
    if as_json:
        for subscription in found:
            common.echo_json(_view(subscription))
        return
    table = Table("webhook id", "url", "event types", "secrets", "created")
    for subscription in found:
        table.add_row(
            str(subscription.id),
            subscription.url,
            ", ".join(subscription.event_types),
            str(subscription.active_secrets),
            subscription.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    common.console().print(table)


@webhooks_group.command("remove")
@click.argument("webhook_id")
def remove_command(webhook_id: str) -> None:
    """Remove a subscription with its secrets and its pending deliveries."""

    async def go(connection: asyncpg.Connection) -> bool:
        return await delete_subscription(connection, _webhook_id(webhook_id))

    if not common.with_database(common.settings(), go):
        raise NotFoundError("no webhook has that id")
    common.echo_json({"removed": webhook_id})


@webhooks_group.command("rotate")
@click.argument("webhook_id")
@click.option("--retire-old", is_flag=True, help="End a rotation now: only the newest secret signs (no new secret).")
def rotate_command(webhook_id: str, retire_old: bool) -> None:
    """Make a new signing secret (printed once); the previous one keeps signing beside it
    for DELETION_WEBHOOK_ROTATION_GRACE, or until `rotate --retire-old`."""
    loaded = common.settings()
    secret = None if retire_old else new_secret()

    async def go(connection: asyncpg.Connection) -> Subscription:
        found = await _subscription(connection, webhook_id)
        owner = SecretOwner(subscription_id=found.id)
        if secret is None:
            await retire_old_secrets(connection, owner)
        else:
            await add_secret(
                connection, owner, SecretBox.from_settings(loaded).seal(secret), loaded.webhook_rotation_grace
            )
        return await _subscription(connection, webhook_id)

    updated = common.with_database(loaded, go)
    common.echo_json({**_view(updated), "secret": secret})


@webhooks_group.command("callback-secret")
@click.argument("project_key")
@click.option("--rotate", is_flag=True, help="Make a new one although one exists (the old one keeps signing a while).")
@click.option("--retire-old", is_flag=True, help="End a rotation now: only the newest secret signs.")
def callback_secret_command(project_key: str, rotate: bool, retire_old: bool) -> None:
    """Make the secret that signs deliveries to the project's requests' own callbackUrls
    (printed once). Callbacks of a project without one wait in the webhook dead-letter
    queue: make one, then `deletion-worker dlq replay`."""
    loaded = common.settings()
    secret = None if retire_old else new_secret()

    async def go(connection: asyncpg.Connection) -> dict[str, Any]:
        owner = SecretOwner(callback_project_id=await _project_id(connection, project_key))
        active, _ = await secret_status(connection, owner)
        if secret is None:
            await retire_old_secrets(connection, owner)
        elif active and not rotate:
            raise RefusedError("the project has a callback secret; pass --rotate to make a new one")
        else:
            await add_secret(
                connection, owner, SecretBox.from_settings(loaded).seal(secret), loaded.webhook_rotation_grace
            )
        active, ends = await secret_status(connection, owner)
        return {"secret": secret, "activeSecrets": active, "rotationEndsAt": ends.isoformat() if ends else None}

    common.echo_json(common.with_database(loaded, go))


@webhooks_group.command("test")
@click.argument("webhook_id")
def test_command(webhook_id: str) -> None:
    """Send the subscription a signed `webhook.test` event now, and print the answer
    (exit 1 unless it was 2xx). Nothing is retried or recorded."""
    loaded = common.settings()
    box = SecretBox.from_settings(loaded)

    async def go() -> dict[str, Any]:
        connection = await common.connect_database(loaded)
        try:
            found = await _subscription(connection, webhook_id)
            project_key = await connection.fetchval("SELECT key FROM projects WHERE id = $1", found.project_id)
            sealed = await active_sealed_secrets(connection, SecretOwner(subscription_id=found.id))
        finally:
            await connection.close()
        event_id = str(uuid.uuid4())
        body = orjson.dumps(
            {
                "eventId": event_id,
                "type": TEST_EVENT_TYPE,
                "occurredAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "projectKey": project_key,
                "webhookId": str(found.id),
            }
        )
        headers = signed_headers(event_id, TEST_EVENT_TYPE, [box.open(s) for s in sealed], body)
        sender = WebhookSender(timeout=loaded.webhook_timeout, allow_private=loaded.webhook_allow_private)
        try:
            outcome = await sender.send(found.url, body, headers)
        finally:
            await sender.close()
        return {"webhookId": str(found.id), "outcome": outcome.kind, "status": outcome.status, "detail": outcome.detail}

    result = common.run(go())
    common.echo_json(result)
    if result["outcome"] != "delivered":
        raise common.CliError(f"the test delivery was not accepted: {result['detail']}")
