"""Receipts are issued once a job has ended, stored (every request answers the same
bytes), and appended to the job's audit trail; the identities they cover are checked by
keyed hash, before and after retention replaced the values."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import orjson
import pytest

from tests.support import end_job
from worker.receipts.identities import covers
from worker.receipts.signing import ReceiptSigner, generate_private_key, verify_receipt
from worker.store.audit import job_audit, verify_chain
from worker.store.jobs import NewJob, create_jobs
from worker.store.receipts import Receipt, ReceiptNotReadyError, issue_receipt
from worker.store.retention import hash_expired_identities, identity_hash

MakeProject = Callable[..., Awaitable[tuple[int, str]]]
KEY = b"receipt-test-hash-key-of-32-bytes!!"
IDENTITIES = [("email", "ann@example.com"), ("userId", "u-42")]


async def test_an_ended_job_gets_one_stable_receipt_on_its_trail(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    project_id, project_key = await make_project()
    signer = ReceiptSigner(generate_private_key())
    async with pool.acquire() as connection:
        created = await create_jobs(connection, [NewJob(f"rc-{project_id}", project_id, IDENTITIES)], ["crm"], None)
        job_id = created[(project_id, f"rc-{project_id}")]
        with pytest.raises(ReceiptNotReadyError):
            await issue_receipt(connection, job_id, KEY, signer)
        # What the product said it did (an acknowledgement's counts) is in the receipt.
        await connection.execute(
            "UPDATE product_status SET deleted = 3, not_found = 1, identities_failed = 0 WHERE job_id = $1", job_id
        )
        await end_job(connection, job_id, "completed")
        before_receipt, head = await job_audit(connection, job_id)
        first, second = await asyncio.gather(
            *(_issue(pool, job_id, signer) for _ in range(2))  # two first requests at once
        )
        entries, head = await job_audit(connection, job_id)

    assert first.document == second.document
    assert sorted([first.issued_now, second.issued_now]) == [False, True]
    receipt = verify_receipt(first.document, signer.public_key)
    assert (receipt["jobId"], receipt["projectKey"], receipt["status"]) == (job_id, project_key, "completed")
    assert [(p["product"], p["deleted"], p["notFound"], p["identitiesFailed"]) for p in receipt["products"]] == [
        ("crm", 3, 1, 0)
    ]
    assert receipt["dryRun"] is False
    assert receipt["auditHead"] == {"seq": before_receipt[-1].seq, "hash": before_receipt[-1].hash.hex()}
    assert all(value not in first.document.decode() for _, value in IDENTITIES)
    assert covers(receipt, identity_hash(KEY, "email", "ann@example.com"))
    assert not covers(receipt, identity_hash(KEY, "email", "bob@example.com"))
    # Storing it appended one entry naming the receipt's bytes; the chain holds.
    assert [entry.kind for entry in entries].count("receipt.issued") == 1
    issued = orjson.loads(entries[-1].detail)
    assert issued["keyId"] == signer.key_id
    assert verify_chain(entries, head).intact


async def _issue(pool: asyncpg.Pool, job_id: int, signer: ReceiptSigner) -> Receipt:
    async with pool.acquire() as connection:
        return await issue_receipt(connection, job_id, KEY, signer)


async def test_identities_hashed_by_retention_give_the_same_hashes(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    signer = ReceiptSigner(generate_private_key())
    async with pool.acquire() as connection:
        created = await create_jobs(connection, [NewJob(f"rr-{project_id}", project_id, IDENTITIES)], ["crm"], None)
        job_id = created[(project_id, f"rr-{project_id}")]
        await end_job(connection, job_id, "failed", ago=timedelta(days=30))
        await hash_expired_identities(connection, KEY, timedelta(days=7))
        assert await connection.fetchval("SELECT count(value) FROM job_identities WHERE job_id = $1", job_id) == 0
        receipt = verify_receipt((await issue_receipt(connection, job_id, KEY, signer)).document, signer.public_key)
    assert receipt["status"] == "failed"
    assert covers(receipt, identity_hash(KEY, "userId", "u-42"))
    assert receipt["identities"]["count"] == 2
