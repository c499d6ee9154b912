"""Personal-data retention: identity values are kept only while a job needs them.

Once a job has ended and the retention period has passed, each identity value is
replaced by a keyed hash (HMAC-SHA256 with DELETION_IDENTITY_HASH_KEY over namespace
and value). The hash still proves which identities a job deleted — `identity_in_job`
answers that for a given identity — but cannot be turned back into the value, and
without the key cannot even be checked against guesses.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import asyncpg


def identity_hash(key: bytes, namespace: str, value: str) -> bytes:
    # NUL cannot occur in either part (the schemas refuse it), so the pair is unambiguous.
    return hmac.new(key, f"{namespace}\x00{value}".encode(), hashlib.sha256).digest()


async def hash_expired_identities(
    connection: asyncpg.Connection, key: bytes, retention: timedelta, max_jobs: int = 500
) -> tuple[int, int]:
    """Hash the identities of up to `max_jobs` ended jobs past retention; returns (jobs, identities).

    The jobs come off the retention queue (a row per ended job, written when it ended);
    rows another process holds are skipped, and taking them commits with the hashing."""
    async with connection.transaction():
        job_ids = [
            row["job_id"]
            for row in await connection.fetch(
                """
                WITH due AS (
                    SELECT finished_at, job_id FROM retention_queue
                    WHERE finished_at < now() - $1::interval
                    ORDER BY finished_at, job_id
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                )
                DELETE FROM retention_queue q USING due
                WHERE q.finished_at = due.finished_at AND q.job_id = due.job_id
                RETURNING q.job_id
                """,
                retention,
                max_jobs,
            )
        ]
        if not job_ids:
            return 0, 0
        rows = await connection.fetch(
            "SELECT job_id, seq, namespace, value FROM job_identities"
            " WHERE job_id = ANY($1::bigint[]) AND value IS NOT NULL",
            job_ids,
        )
        await connection.execute(
            """
            UPDATE job_identities ji SET value = NULL, value_hash = x.h
            FROM unnest($1::bigint[], $2::int[], $3::bytea[]) AS x(job_id, seq, h)
            WHERE ji.job_id = x.job_id AND ji.seq = x.seq
            """,
            [row["job_id"] for row in rows],
            [row["seq"] for row in rows],
            [identity_hash(key, row["namespace"], row["value"]) for row in rows],
        )
        await connection.execute("UPDATE jobs SET identities_hashed_at = now() WHERE id = ANY($1::bigint[])", job_ids)
    return len(job_ids), len(rows)


async def identity_in_job(connection: asyncpg.Connection, key: bytes, job_id: int, namespace: str, value: str) -> bool:
    """Whether this identity was part of the job, whether or not its value is hashed yet."""
    found: bool = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM job_identities WHERE job_id = $1 AND namespace = $2"
        " AND (value = $3 OR value_hash = $4))",
        job_id,
        namespace,
        value,
        identity_hash(key, namespace, value),
    )
    return found
