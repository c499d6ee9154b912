"""Bodies of the webhook routes of the HTTP API (worker/api/routes_webhooks.py), and the
message of a webhook delivery given up (`<prefix>.webhooks.dead`, replayed onto
`<prefix>.webhooks`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from schemas.events import LifecycleEvent
from schemas.messages import CallbackUrl

MAX_EVENT_TYPES = 50


class WebhookCreate(BaseModel):
    """POST /public/{projectKey}/webhooks."""

    model_config = ConfigDict(extra="forbid")

    url: CallbackUrl = Field(description="https:// (or http://) URL without credentials; public addresses only")
    eventTypes: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        description="Event types (job.completed, product.crm.failed) or patterns (job.*, product.*.failed, *)",
    )
    description: str = Field(default="", max_length=500)


class SecretRotation(BaseModel):
    """POST /public/{projectKey}/webhooks/{webhookId}/rotate."""

    model_config = ConfigDict(extra="forbid")

    retireOld: StrictBool = Field(
        default=False, description="End a rotation: every secret but the newest stops signing now (no new secret)"
    )


class CallbackSecretRequest(SecretRotation):
    """POST /public/{projectKey}/callback-secret."""

    rotate: StrictBool = Field(default=False, description="Make a new secret although one exists (a rotation)")


class Webhook(BaseModel):
    """A subscription; times are epoch milliseconds."""

    webhookId: str
    url: str
    eventTypes: list[str]
    description: str
    createdAt: int
    activeSecrets: int = Field(description="2 while a rotation is under way: deliveries carry both signatures")
    rotationEndsAt: int | None = Field(description="When the older secret stops signing")


class WebhookWithSecret(Webhook):
    secret: str | None = Field(description="The new signing secret: shown this once, keep it")


class WebhookEnvelope(BaseModel):
    data: Webhook


class WebhookCreatedEnvelope(BaseModel):
    data: WebhookWithSecret


class WebhookListEnvelope(BaseModel):
    data: list[Webhook]


class CallbackSecret(BaseModel):
    secret: str | None = Field(description="The new callback secret: shown this once (null when only retiring)")
    activeSecrets: int
    rotationEndsAt: int | None


class CallbackSecretEnvelope(BaseModel):
    data: CallbackSecret


class WebhookDelivery(BaseModel):
    """A delivery the notify role gave up (worker.roles.notify_outcomes.dead_letter): enough
    to make it again when `deletion-worker dlq replay` puts it on `<prefix>.webhooks`.
    Either a subscription's (`subscriptionId`; its current URL is used) or a callback URL
    of the event's job (`url`)."""

    model_config = ConfigDict(extra="allow")

    subscriptionId: str | None = None
    projectId: int
    url: str | None = None
    attempts: int = Field(ge=0, description="Attempts made before it was given up")
    event: LifecycleEvent
