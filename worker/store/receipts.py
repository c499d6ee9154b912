"""Deletion receipts (migrations/0012): issued on first request once a job has ended,
then stored, so that every later request answers the same signed bytes.

A receipt states, under the service's Ed25519 key: which job and request it is (ids,
project, organization), how it ended and when, each product's status and chunk counts
and when it got there, which identities it covered (their keyed hashes, or a digest of
them for a large job: worker.receipts.identities), and the head of the job's audit
chain when it was issued. Storing it appends `receipt.issued` to that chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from schemas.status import TERMINAL_JOB_STATUSES
from worker.errors import NotFoundError, RefusedError
from worker.receipts.identities import identities_section
from worker.receipts.signing import ALGORITHM, ReceiptSigner
from worker.store.retention import identity_hash

RECEIPT_VERSION = 1


class ReceiptNotReadyError(RefusedError):
    """The job has not ended: there is nothing to attest yet."""


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment is not None else None


@dataclass(frozen=True)
class Receipt:
    document: bytes  # the receipt file, exactly as stored and served
    issued_now: bool  # False: it had been issued before


JOB_FACTS = """
SELECT j.id, j.status, j.finished_at, j.created_at, j.request_id, j.workorder_id, j.bundle_id, j.action,
       j.dataset_id, j.identity_count, coalesce(j.dry_run, false) AS dry_run, p.key AS project_key, p.org_id
FROM jobs j JOIN projects p ON p.id = j.project_id
WHERE j.id = $1
"""


async def job_identity_hashes(connection: asyncpg.Connection, key: bytes, job_id: int) -> list[bytes]:
    """The keyed hash of every identity of the job: as retention stored it, or computed
    from the value it has not replaced yet (the same hash)."""
    rows = await connection.fetch(
        "SELECT namespace, value, value_hash FROM job_identities WHERE job_id = $1 ORDER BY seq", job_id
    )
    return [
        bytes(row["value_hash"]) if row["value"] is None else identity_hash(key, row["namespace"], row["value"])
        for row in rows
    ]


async def _payload(
    connection: asyncpg.Connection, job: asyncpg.Record, key: bytes, signer: ReceiptSigner
) -> dict[str, Any]:
    products = await connection.fetch(
        "SELECT product, status, chunks_total, chunks_success, chunks_failed, created_at,"
        " deleted, not_found, identities_failed, retries"
        " FROM product_status WHERE job_id = $1 ORDER BY product",
        job["id"],
    )
    head = await connection.fetchrow("SELECT seq, hash FROM audit_heads WHERE job_id = $1", job["id"])
    return {
        "type": "deletion-receipt",
        "version": RECEIPT_VERSION,
        "algorithm": ALGORITHM,
        "keyId": signer.key_id,
        "jobId": job["id"],
        "workorderId": job["workorder_id"],
        "bundleId": job["bundle_id"],
        "requestId": job["request_id"],
        "projectKey": job["project_key"],
        "organization": job["org_id"],
        "action": job["action"],
        "datasetId": job["dataset_id"],
        "status": job["status"],
        # A dry run deleted nothing: its receipt proves only what would have been.
        "dryRun": job["dry_run"],
        "createdAt": iso(job["created_at"]),
        "finishedAt": iso(job["finished_at"]),
        "products": [
            {
                "product": row["product"],
                "status": row["status"],
                "since": iso(row["created_at"]),
                "chunksTotal": row["chunks_total"],
                "chunksSuccess": row["chunks_success"],
                "chunksFailed": row["chunks_failed"],
                # What the product said it did (issue 15 part 1); null: it did not say.
                "deleted": row["deleted"],
                "notFound": row["not_found"],
                "identitiesFailed": row["identities_failed"],
                "retries": row["retries"] or 0,
            }
            for row in products
        ],
        "identities": identities_section(await job_identity_hashes(connection, key, job["id"])),
        # The trail up to here; a job ended before the audit trail existed may have none.
        "auditHead": {"seq": head["seq"], "hash": bytes(head["hash"]).hex()} if head else None,
        "issuedAt": iso(datetime.now(UTC)),
    }


async def issue_receipt(
    connection: asyncpg.Connection, job_id: int, identity_hash_key: bytes, signer: ReceiptSigner
) -> Receipt:
    """The receipt of the job's current ending: the stored one, or a new one signed and
    stored now. NotFoundError for no such job; ReceiptNotReadyError while it has not
    ended. Two first requests at once both sign, and both answer the one stored first."""
    job = await connection.fetchrow(JOB_FACTS, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    if job["status"] not in TERMINAL_JOB_STATUSES or job["finished_at"] is None:
        raise ReceiptNotReadyError(f"job {job_id} is {job['status']}: a receipt is issued once it has ended")
    stored = await _stored(connection, job_id, job["finished_at"])
    if stored is not None:
        return Receipt(stored, issued_now=False)
    document = signer.sign(await _payload(connection, job, identity_hash_key, signer))
    inserted = await connection.fetchval(
        "INSERT INTO receipts (job_id, finished_at, issued_at, key_id, document) VALUES ($1, $2, now(), $3, $4)"
        " ON CONFLICT (job_id, finished_at) DO NOTHING RETURNING true",
        job_id,
        job["finished_at"],
        signer.key_id,
        document.decode(),
    )
    if inserted:
        return Receipt(document, issued_now=True)
    stored = await _stored(connection, job_id, job["finished_at"])
    assert stored is not None  # the concurrent request's, committed: receipts are never deleted alone
    return Receipt(stored, issued_now=False)


async def _stored(connection: asyncpg.Connection, job_id: int, finished_at: datetime) -> bytes | None:
    document: str | None = await connection.fetchval(
        "SELECT document FROM receipts WHERE job_id = $1 AND finished_at = $2", job_id, finished_at
    )
    return document.encode() if document is not None else None
