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


CHOOSE_DUE_JOBS = """
WITH due AS (
    SELECT finished_at, job_id FROM retention_queue
    WHERE finished_at < now() - $1::interval
    ORDER BY finished_at, job_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), sized AS (
    SELECT due.job_id, coalesce(j.identity_count, 0) AS n,
           sum(coalesce(j.identity_count, 0)) OVER (ORDER BY due.finished_at, due.job_id) AS running_total
    FROM due LEFT JOIN jobs j ON j.id = due.job_id
)
SELECT job_id FROM sized WHERE running_total - n < $3
"""


async def hash_expired_identities(
    connection: asyncpg.Connection, key: bytes, retention: timedelta, max_identities: int = 5_000, max_jobs: int = 500
) -> tuple[int, int]:
    """One bounded step of retention: hash at most `max_identities` identity values of
    ended jobs past retention, in one transaction; returns (jobs finished, identities hashed).

    Jobs come off the retention queue (a row per ended job, written when it ended); rows
    another process holds are skipped. A job larger than the step is hashed over several
    steps and leaves the queue with the step that hashes its last value, so no step, and
    no process, ever holds more than `max_identities` values."""
    async with connection.transaction():
        job_ids = [
            row["job_id"] for row in await connection.fetch(CHOOSE_DUE_JOBS, retention, max_jobs, max_identities)
        ]
        if not job_ids:
            return 0, 0
        rows = await connection.fetch(
            "SELECT job_id, seq, namespace, value FROM job_identities"
            " WHERE job_id = ANY($1::bigint[]) AND value IS NOT NULL ORDER BY job_id, seq LIMIT $2",
            job_ids,
            max_identities,
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
        done = await connection.fetch(
            """
            WITH finished AS (
                DELETE FROM retention_queue q WHERE q.job_id = ANY($1::bigint[])
                AND NOT EXISTS (SELECT 1 FROM job_identities ji WHERE ji.job_id = q.job_id AND ji.value IS NOT NULL)
                RETURNING q.job_id
            )
            UPDATE jobs j SET identities_hashed_at = now() FROM finished f WHERE j.id = f.job_id RETURNING j.id
            """,
            job_ids,
        )
    return len(done), len(rows)


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
