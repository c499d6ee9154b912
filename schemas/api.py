"""Bodies of the HTTP API: the Jobs API (seeds 000-002) and the work-order API (seed 003).

Field names and shapes follow the seeds' JSON examples exactly; these models are what
/openapi.json publishes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.messages import MAX_CALLBACK_URLS, MAX_IDENTITIES, CallbackUrl, Identity, Regulation, ShortText, Text

JobStatus = Literal["scheduled", "running", "completed", "failed", "cancelled"]
WorkOrderStatus = Literal["received", "processing", "completed", "failed", "cancelled"]
# `skipped`: the product was named when the job was created but is no longer configured
# where it was dispatched (the job's errors say so).
ProductStatus = Literal["waiting", "running", "success", "failed", "cancelled", "skipped"]


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


class WorkOrderUpdate(BaseModel):
    """PUT /workorder/{id}: only these two fields can change."""

    model_config = ConfigDict(extra="forbid")

    displayName: Text | None = None
    description: Text | None = None


class ProductStatusDetail(BaseModel):
    productName: str
    productStatus: ProductStatus
    createdAt: str


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


class WorkOrderList(BaseModel):
    results: list[WorkOrder]
    page: int
    limit: int


class ErrorBody(BaseModel):
    error: str = Field(description="A short machine-readable code.")
    message: str = Field(description="What went wrong and what to do about it.")
