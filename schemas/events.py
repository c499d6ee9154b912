"""Lifecycle events: what the service tells requesters about their jobs.

Published to the `<prefix>.events` topic exchange (persistent, with confirms), one
message per event, the routing key being the event's `type`:

- `job.<status>`: a job's status changed (`job.scheduled` when it is created, then
  `job.running`, `job.completed`, `job.failed`, `job.cancelled`);
- `product.<product>.<status>`: a product's part of a job changed (`running`,
  `success`, `failed`, `cancelled`, `skipped`);
- `job.at_risk` / `job.overdue`: a job with a due date is still not finished a margin
  before it, or after it (once each per job).

Delivery is at least once: a consumer deduplicates by `eventId`. Events of one job are
published in the order they were committed by a single relay, but several relays, or
a redelivery, can reorder them: order by `occurredAt`, or trust a terminal status.

Events never carry an identity value. The body is written by the database triggers of
migrations/0008 (and worker.store.due_dates); this model is the contract they keep.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.status import JobStatus, ProductStatus

EventStatus = Annotated[str, Field(description="The new status: a job status, or a product status for product events")]

JOB_EVENT_TYPES = (*(f"job.{status}" for status in JobStatus), "job.at_risk", "job.overdue")
PRODUCT_EVENT_STATUSES = tuple(str(status) for status in ProductStatus if status != ProductStatus.WAITING)

EVENT_TYPE_PATTERN = (
    r"^(job\.(" + "|".join(s.split(".", 1)[1] for s in JOB_EVENT_TYPES) + r")"
    r"|product\.[a-z0-9][a-z0-9_-]{0,62}\.(" + "|".join(PRODUCT_EVENT_STATUSES) + r"))$"
)
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)


def is_event_type(text: str) -> bool:
    return _EVENT_TYPE.match(text) is not None


class LifecycleEvent(BaseModel):
    """One change in a job's life, as published and as delivered to webhooks."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    event_id: str = Field(alias="eventId", description="Unique per event; deduplicate by it")
    type: Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]
    occurred_at: datetime = Field(alias="occurredAt", description="When the change was made (UTC)")
    job_id: int = Field(alias="jobId")
    request_id: str = Field(alias="requestId")
    workorder_id: str = Field(alias="workorderId")
    bundle_id: str = Field(alias="bundleId")
    project_key: str = Field(alias="projectKey")
    organization: str
    status: EventStatus
    job_status: JobStatus = Field(alias="jobStatus", description="The job's status when the event was made")
    product: str | None = Field(default=None, description="The product, for product events")
    products: dict[str, ProductStatus] | None = Field(
        default=None, description="Every product's status for the job (absent on job.scheduled)"
    )
    error: str | None = Field(default=None, description="What failed, for failed jobs and products; never identities")
    regulation: str | None = Field(default=None, description="The regulation the request was made under")
    due_at: datetime | None = Field(default=None, alias="dueAt", description="When the deletion is due")


EventKind = Literal["job", "product"]


def event_kind(event_type: str) -> EventKind:
    return "product" if event_type.startswith("product.") else "job"
