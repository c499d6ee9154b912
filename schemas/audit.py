"""Bodies of the audit-trail route (worker/api/routes_audit.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    """One step of a job's life. `hash` is SHA-256 of `prevHash` (raw bytes) followed by
    the UTF-8 of `jobId`, `seq`, `kind`, `at` and `detailText` joined by newlines."""

    seq: int = Field(description="1, 2, ... within the job")
    kind: str = Field(
        description="job.received, job.running, products, job.completed, job.failed, job.cancelled,"
        " job.identities_hashed, receipt.issued"
    )
    at: str = Field(description="UTC, microseconds: YYYY-MM-DDTHH:MM:SS.ffffffZ")
    detail: dict[str, Any]
    detailText: str = Field(description="`detail` exactly as hashed")
    prevHash: str = Field(description="hex; 64 zeros for the first entry")
    hash: str = Field(description="hex")


class AuditHead(BaseModel):
    seq: int
    hash: str


class AuditTrail(BaseModel):
    jobId: int
    entries: list[AuditEntry]
    head: AuditHead | None = Field(description="The latest entry as the chain's head row holds it")
    intact: bool = Field(description="The chain recomputed by the server: every hash and link holds")
    problems: list[str]


class AuditEnvelope(BaseModel):
    data: AuditTrail
