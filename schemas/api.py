"""Bodies of the HTTP API: the Jobs API (seeds 000-002) and the work-order API (seed 003).

Field names and shapes follow the seeds' JSON examples exactly; these models are what
/openapi.json publishes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from schemas.messages import MAX_CALLBACK_URLS, MAX_IDENTITIES, CallbackUrl, Identity, Regulation, ShortText, Text

JobStatus = Literal["scheduled", "running", "completed", "failed", "cancelled"]
WorkOrderStatus = Literal["received", "processing", "completed", "failed", "cancelled"]
# `skipped`: the product was named when the job was created but is no longer configured
# where it was dispatched (the job's errors say so).
ProductStatus = Literal["waiting", "running", "success", "failed", "cancelled", "skipped"]


# What a product did for a job, beyond the seeds: counts, failures, retries, timing. In a
# dry run `wouldDelete` takes the place of `deleted`. The same fields close both views
# below, after each view's own (the seed's keep their names and order).
DELETED = Field(default=None, description="Rows or records the product deleted, when it says")
WOULD_DELETE = Field(default=None, description="Dry runs: what the product would delete")
NOT_FOUND = Field(default=None, description="Identities the product had nothing for, when it says")
IDENTITIES_FAILED = Field(default=0, description="Identities that failed at their latest attempt")
RETRIES = Field(default=0, description="How often what failed was sent again")
STARTED_AT = Field(default=None, description="The dispatch, or the latest retry (ISO-8601 UTC)")
FINISHED_AT = Field(default=None, description="When its last chunk was settled (ISO-8601 UTC)")


class JobProductResult(BaseModel):
    """What a product did for a job."""

    product: str
    status: ProductStatus
    deleted: int | None = DELETED
    wouldDelete: int | None = WOULD_DELETE
    notFound: int | None = NOT_FOUND
    identitiesFailed: int = IDENTITIES_FAILED
    retries: int = RETRIES
    startedAt: int | None = Field(default=None, description="The dispatch, or the latest retry (epoch ms)")
    finishedAt: int | None = Field(default=None, description="When its last chunk was settled (epoch ms)")
    durationMs: int | None = None


class Job(BaseModel):
    """A user-data deletion job; times are epoch milliseconds."""

    jobId: int
    description: str
    status: JobStatus
    projectId: int
    action: str
    referenceId: str | None
    createdAt: int
    updatedAt: int | None
    startAt: int | None
    errors: list[str] | None
    # Beyond the seed: due dates (worker.due_dates).
    regulation: Regulation | None = None
    dueAt: int | None = Field(default=None, description="When the deletion is due (epoch ms)")
    dryRun: bool = Field(default=False, description="Counted what would be deleted; deleted nothing")
    # Only in the view of one job: what each product did.
    products: list[JobProductResult] | None = None


class JobEnvelope(BaseModel):
    data: Job


class JobListEnvelope(BaseModel):
    data: list[Job]


class WorkOrderCreate(BaseModel):
    """POST /workorder: a record-delete request for up to 100,000 identities."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["delete_identity"]
    datasetId: ShortText = "ALL"
    displayName: Text = ""
    description: Text = ""
    identities: list[Identity] = Field(min_length=1, max_length=MAX_IDENTITIES)
    # Beyond the seed: due dates and the request's own callback URLs (its events).
    regulation: Regulation | None = None
    dueAt: AwareDatetime | None = Field(default=None, description="Overrides the regulation's deadline")
    callbackUrls: list[CallbackUrl] | None = Field(default=None, max_length=MAX_CALLBACK_URLS)
    # Strict: a flag that decides whether data is deleted is never guessed from 0, "no" or "false".
    dryRun: StrictBool = Field(default=False, description="Every product counts what it would delete; deletes nothing")


class WorkOrderUpdate(BaseModel):
    """PUT /workorder/{id}: only these two fields can change."""

    model_config = ConfigDict(extra="forbid")

    displayName: Text | None = None
    description: Text | None = None


class ProductStatusDetail(BaseModel):
    """A product's status for a work order (the seed's three fields), then what it did."""

    productName: str
    productStatus: ProductStatus
    createdAt: str
    deleted: int | None = DELETED
    wouldDelete: int | None = WOULD_DELETE
    notFound: int | None = NOT_FOUND
    identitiesFailed: int = IDENTITIES_FAILED
    retries: int = RETRIES
    startedAt: str | None = STARTED_AT
    finishedAt: str | None = FINISHED_AT
    durationMs: int | None = None


class WorkOrder(BaseModel):
    """A work order; times are ISO-8601 UTC strings."""

    workorderId: str
    orgId: str
    bundleId: str
    action: Literal["identity-delete"]
    createdAt: str
    updatedAt: str
    operationCount: int
    status: WorkOrderStatus
    createdBy: str | None
    datasetId: str
    displayName: str
    description: str
    productStatusDetails: list[ProductStatusDetail] | None = None
    regulation: Regulation | None = None
    dueAt: str | None = Field(default=None, description="When the deletion is due (ISO-8601 UTC)")
    dryRun: bool = Field(default=False, description="Counted what would be deleted; deleted nothing")


class WorkOrderList(BaseModel):
    results: list[WorkOrder]
    page: int
    limit: int


class ErrorBody(BaseModel):
    error: str = Field(description="A short machine-readable code.")
    message: str = Field(description="What went wrong and what to do about it.")


class FailedIdentityEntry(BaseModel):
    """An identity a product could not delete. `id` is the value while the job keeps it;
    after retention it is null and `idHash` (its keyed hash) names it."""

    productName: str
    product: str
    namespace: dict[str, str] = Field(description='{"code": namespace}, as in the request')
    id: str | None
    idHash: str | None
    status: Literal["failed"]
    error: str | None
    failedAt: str | None
    retrying: bool = Field(description="Sent again and not yet settled")


class FailedIdentityList(BaseModel):
    results: list[FailedIdentityEntry]
    page: int
    limit: int
    total: int = Field(description="Failed identities of the products listed")
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class RetryRequest(BaseModel):
    """Which products' failed chunks to send again (default: every product's)."""

    model_config = ConfigDict(extra="forbid")

    products: list[ShortText] | None = Field(default=None, max_length=100)


class RetriedProduct(BaseModel):
    product: str
    chunks: int
    identities: int


class RetryResult(BaseModel):
    jobId: int
    status: Literal["running"]
    products: list[RetriedProduct]
