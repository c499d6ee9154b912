"""Webhook subscriptions of a project, and its callback secret: `/public/{projectKey}/...`.

A subscription's signing secret is answered once, when it is made (or rotated); only
sealed copies are stored (worker.webhooks.crypto). A subscription of another
organization's project answers like none at all (404).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from schemas.api import ErrorBody
from schemas.webhooks import (
    CallbackSecretEnvelope,
    CallbackSecretRequest,
    SecretRotation,
    WebhookCreate,
    WebhookCreatedEnvelope,
    WebhookEnvelope,
    WebhookListEnvelope,
)
from worker.api.auth import bearer_owner
from worker.api.deps import StateDep, project_id_of
from worker.api.errors import ApiError, not_found
from worker.api.shapes import epoch_ms
from worker.api.state import ApiState, json_response
from worker.errors import TransientError
from worker.store.api_keys import ApiKeyOwner
from worker.store.webhooks import (
    SecretOwner,
    Subscription,
    add_secret,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
    retire_old_secrets,
    secret_status,
)
from worker.webhooks.crypto import SecretBox
from worker.webhooks.signing import new_secret
from worker.webhooks.types import check_event_types
from worker.webhooks.urls import resolve_destination

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415)}

router = APIRouter(prefix="/public", tags=["webhooks"], responses=ERRORS)
# A default rather than an Annotated alias (see routes_jobs): FastAPI resolves it here.
authenticated = Depends(bearer_owner)


def webhook_view(subscription: Subscription) -> dict[str, Any]:
    return {
        "webhookId": str(subscription.id),
        "url": subscription.url,
        "eventTypes": subscription.event_types,
        "description": subscription.description,
        "createdAt": epoch_ms(subscription.created_at),
        "activeSecrets": subscription.active_secrets,
        "rotationEndsAt": epoch_ms(subscription.rotation_ends_at),
    }


def parse_webhook_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise not_found("webhook") from None


async def check_destination(state: ApiState, url: str) -> None:
    """The URL's form, and every address its host resolves to now (checked again at each delivery)."""
    try:
        await resolve_destination(url, allow_private=state.settings.webhook_allow_private)
    except TransientError as error:
        raise ApiError(400, str(error)) from None


async def _subscription(state: ApiState, project_id: int, webhook_id: str) -> Subscription:
    async with state.pool.acquire() as connection:
        found = await get_subscription(connection, parse_webhook_id(webhook_id), project_id)
    if found is None:
        raise not_found("webhook")
    return found


@router.post(
    "/{projectKey}/webhooks", status_code=201, response_model=WebhookCreatedEnvelope, summary="Subscribe a webhook"
)
async def create_webhook(
    state: StateDep, projectKey: str, body: WebhookCreate, owner: ApiKeyOwner = authenticated
) -> Response:
    """Sends the project's lifecycle events of the given types to `url`, signed. The
    answer carries the signing secret: the only time it is shown."""
    project_id = await project_id_of(state, projectKey, owner)
    event_types = check_event_types(body.eventTypes)
    await check_destination(state, body.url)
    secret = new_secret()
    sealed = SecretBox.from_settings(state.settings).seal(secret)
    async with state.pool.acquire() as connection:
        created = await create_subscription(
            connection,
            project_id,
            body.url,
            event_types,
            sealed,
            description=body.description,
            created_by=owner.prefix,
        )
    return json_response({"data": {**webhook_view(created), "secret": secret}}, status=201)


@router.get("/{projectKey}/webhooks", response_model=WebhookListEnvelope, summary="List the project's webhooks")
async def list_webhooks(state: StateDep, projectKey: str, owner: ApiKeyOwner = authenticated) -> Response:
    project_id = await project_id_of(state, projectKey, owner)
    async with state.pool.acquire() as connection:
        found = await list_subscriptions(connection, project_id)
    return json_response({"data": [webhook_view(subscription) for subscription in found]})


@router.get("/{projectKey}/webhooks/{webhookId}", response_model=WebhookEnvelope, summary="Get a webhook")
async def get_webhook(state: StateDep, projectKey: str, webhookId: str, owner: ApiKeyOwner = authenticated) -> Response:
    project_id = await project_id_of(state, projectKey, owner)
    return json_response({"data": webhook_view(await _subscription(state, project_id, webhookId))})


@router.delete("/{projectKey}/webhooks/{webhookId}", response_model=WebhookEnvelope, summary="Remove a webhook")
async def remove_webhook(
    state: StateDep, projectKey: str, webhookId: str, owner: ApiKeyOwner = authenticated
) -> Response:
    """Removes the subscription, its secrets and the deliveries it still had pending."""
    project_id = await project_id_of(state, projectKey, owner)
    found = await _subscription(state, project_id, webhookId)
    async with state.pool.acquire() as connection:
        if not await delete_subscription(connection, found.id, project_id):
            raise not_found("webhook")
    return json_response({"data": webhook_view(found)})


@router.post(
    "/{projectKey}/webhooks/{webhookId}/rotate",
    response_model=WebhookCreatedEnvelope,
    summary="Rotate a webhook's signing secret",
)
async def rotate_webhook_secret(
    state: StateDep,
    projectKey: str,
    webhookId: str,
    body: SecretRotation | None = None,
    owner: ApiKeyOwner = authenticated,
) -> Response:
    """A new secret (answered once); the previous one keeps signing beside it for
    DELETION_WEBHOOK_ROTATION_GRACE, so receivers can switch. `retireOld: true` ends a
    rotation at once instead (no new secret)."""
    project_id = await project_id_of(state, projectKey, owner)
    found = await _subscription(state, project_id, webhookId)
    secret_owner = SecretOwner(subscription_id=found.id)
    secret: str | None = None
    async with state.pool.acquire() as connection:
        if body is not None and body.retireOld:
            await retire_old_secrets(connection, secret_owner)
        else:
            secret = new_secret()
            sealed = SecretBox.from_settings(state.settings).seal(secret)
            await add_secret(connection, secret_owner, sealed, state.settings.webhook_rotation_grace)
        updated = await get_subscription(connection, found.id, project_id)
    if updated is None:
        raise not_found("webhook")
    return json_response({"data": {**webhook_view(updated), "secret": secret}})


@router.post(
    "/{projectKey}/callback-secret",
    response_model=CallbackSecretEnvelope,
    summary="Make (or rotate) the project's callback secret",
)
async def callback_secret(
    state: StateDep, projectKey: str, body: CallbackSecretRequest | None = None, owner: ApiKeyOwner = authenticated
) -> Response:
    """The secret that signs deliveries to requests' own `callbackUrls` (answered once).
    One that exists is replaced only with `rotate: true` (the old one keeps signing for
    DELETION_WEBHOOK_ROTATION_GRACE); `retireOld: true` ends a rotation at once."""
    request = body or CallbackSecretRequest()
    project_id = await project_id_of(state, projectKey, owner)
    secret_owner = SecretOwner(callback_project_id=project_id)
    secret: str | None = None
    async with state.pool.acquire() as connection:
        active, _ = await secret_status(connection, secret_owner)
        if request.retireOld:
            await retire_old_secrets(connection, secret_owner)
        elif active and not request.rotate:
            raise ApiError(400, "the project has a callback secret; send rotate: true to make a new one", "refused")
        else:
            secret = new_secret()
            sealed = SecretBox.from_settings(state.settings).seal(secret)
            await add_secret(connection, secret_owner, sealed, state.settings.webhook_rotation_grace)
        active, ends = await secret_status(connection, secret_owner)
    return json_response({"data": {"secret": secret, "activeSecrets": active, "rotationEndsAt": epoch_ms(ends)}})
