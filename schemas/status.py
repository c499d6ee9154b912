"""Every status word of a job, a product's part of a job and a chunk, named once.

The SQL keeps its literals (the migrations' CHECK constraints guard them); Python code
uses these. `StrEnum` members compare equal to their words, so rows read from the
database need no conversion.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.SCHEDULED, JobStatus.RUNNING)
TERMINAL_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class ProductStatus(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The product was named when the job was created but is no longer configured where
    # the job was dispatched (removed from the products file): nothing was sent to it.
    SKIPPED = "skipped"


TERMINAL_PRODUCT_STATUSES = (
    ProductStatus.SUCCESS,
    ProductStatus.FAILED,
    ProductStatus.CANCELLED,
    ProductStatus.SKIPPED,
)


class ChunkStatus(StrEnum):
    WAITING = "waiting"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The work-order API words job states its own way where its documentation has a word.
WORKORDER_STATUS: dict[str, str] = {
    JobStatus.SCHEDULED: "received",
    JobStatus.RUNNING: "processing",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}
