"""Messages on the broker: deletion request, product task, product acknowledgement.

Extra fields are allowed (producers may add their own) and kept out of the database.
Text may not contain NUL characters: Postgres text cannot store them, and refusing them
here turns what would be a database error into a clear dead-letter reason.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, with_config
from typing_extensions import TypedDict

MAX_IDENTITIES = 100_000

Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=10_000)]
ShortText = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", min_length=1, max_length=255)]
IdentityValue = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", min_length=1, max_length=1024)]
EpochMillis = Annotated[int, Field(ge=0, le=253_402_300_799_999)]  # up to year 9999


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# Identities are typed dicts, not models: a request may carry 100,000 of them, and
# validating into dicts is about four times faster and lighter than into model objects.
@with_config(ConfigDict(extra="allow"))
class Namespace(TypedDict):
    code: ShortText


@with_config(ConfigDict(extra="allow"))
class Identity(TypedDict):
    namespace: Namespace
    id: IdentityValue


DeletionAction = Literal["delete_user_data", "delete_identity"]

# Regulations a request can name; each has a deadline (worker.due_dates, settings) from
# which the job's due date follows unless the request gives its own `dueAt`.
Regulation = Literal["gdpr", "uk_gdpr", "ccpa", "lgpd", "pipeda"]
MAX_CALLBACK_URLS = 5
# Checked properly (scheme, credentials, addresses) by worker.webhooks when a request is
# taken; the pattern only keeps junk out of the model.
CallbackUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s\x00]+$", max_length=2048)]


class DeletionRequest(Message):
    """Published by upstream services to `deletion.requests`."""

    request_id: ShortText = Field(alias="requestId")
    project_key: ShortText = Field(alias="projectKey")
    identities: list[Identity] = Field(min_length=1, max_length=MAX_IDENTITIES)
    action: DeletionAction = "delete_user_data"
    dataset_id: ShortText = Field(default="ALL", alias="datasetId")
    start_at: EpochMillis | None = Field(default=None, alias="startAt")
    description: Text = ""
    display_name: Text = Field(default="", alias="displayName")
    reference_id: Text | None = Field(default=None, alias="referenceId")
    regulation: Regulation | None = None
    due_at: EpochMillis | None = Field(default=None, alias="dueAt", description="Overrides the regulation's deadline")
    callback_urls: list[CallbackUrl] | None = Field(
        default=None, alias="callbackUrls", max_length=MAX_CALLBACK_URLS, description="Also sent this job's events"
    )
    # Strict: whether data is deleted is never guessed from 0, "no" or "false".
    dry_run: StrictBool = Field(
        default=False, alias="dryRun", description="Count what would be deleted, per product; delete nothing"
    )


# Task items and acknowledgement results are typed dicts too, keyed by their JSON names:
# every request passes through one of each per product, and validating them as dicts
# halves the cost (a 1,000-item task: 11.6 -> 5.8 us per item; an ack: 3.8 -> 1.6).
@with_config(ConfigDict(extra="allow"))
class TaskItem(TypedDict):
    """One job's chunk of identities inside a product task."""

    jobId: int
    projectId: int
    datasetId: str
    identities: list[Identity]


class ProductTask(Message):
    """Published by dispatch to `deletion.product.<name>`; may carry chunks of many jobs."""

    task_id: ShortText = Field(alias="taskId")
    product: ShortText
    items: list[TaskItem] = Field(min_length=1)
    # Sent only when true, so that a task of an ordinary job reads as it always did.
    dry_run: bool = Field(default=False, alias="dryRun", description="Count what would be deleted and delete nothing")


ResultStatus = Literal["success", "failed", "cancelled"]


Count = Annotated[int, Field(ge=0, le=2**62)]


@with_config(ConfigDict(extra="allow"))
class FailedIdentity(TypedDict):
    """An identity of the item that could not be deleted, and why (the rest were)."""

    namespace: Namespace
    id: IdentityValue
    error: NotRequired[Text | None]


# Counts and failed identities are optional: an acknowledgement without them (every one
# an earlier release or product sent) is as valid as ever.
@with_config(ConfigDict(extra="allow"))
class AckResult(TypedDict):
    jobId: int
    status: ResultStatus
    error: NotRequired[Text | None]
    deleted: NotRequired[Count | None]  # rows or records deleted (in a dry run: that would be)
    notFound: NotRequired[Count | None]  # identities the product had nothing for
    # Only in a `failed` result: the identities that failed, when not all of them did.
    failedIdentities: NotRequired[list[FailedIdentity] | None]


class ProductAck(Message):
    """Published by a product (built-in handler or external service) to `deletion.acks`."""

    task_id: ShortText = Field(alias="taskId")
    product: ShortText
    results: list[AckResult] = Field(min_length=1)
