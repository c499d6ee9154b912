"""Personal-data retention: identity values are kept only while a job needs them.

Once a job has ended and the retention period has passed, each identity value is
replaced by a keyed hash (HMAC-SHA256 with DELETION_IDENTITY_HASH_KEY over namespace
and value). The hash still proves which identities a job deleted (`identity_in_job`
answers that for a given identity) but cannot be turned back into the value, and
without the key cannot even be checked against guesses.

The job's own text goes the same way: wherever an identity value of the job occurs in
its description or display name (the Jobs API writes "Delete user sessions of userId =
<id>"), it is replaced by `hmac:<hex>` of that identity, and the reference id (the user
id of the Jobs API) becomes `hmac:<hex>` of itself. After retention, no column shows an
identity value of an ended job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import defaultdict
from datetime import timedelta

import asyncpg

HASHED_PREFIX = "hmac:"
REFERENCE_NAMESPACE = "referenceId"


def identity_hash(key: bytes, namespace: str, value: str) -> bytes:
    # NUL cannot occur in either part (the schemas refuse it), so the pair is unambiguous.
    return hmac.new(key, f"{namespace}\x00{value}".encode(), hashlib.sha256).digest()


def shown_hash(digest: bytes) -> str:
    """How a hashed value reads where a value was (in API answers and job text)."""
    return HASHED_PREFIX + digest.hex()


SHOWN_HASH = re.compile(HASHED_PREFIX + "[0-9a-f]{64}")


def redact(text: str, values: dict[str, str]) -> str:
    """`text` with each occurrence of each of `values` (value → its shown hash) replaced,
    in one pass: longest values first (a value inside another is not half-replaced), and
    a hash written by an earlier step is left whole (a short value such as `7` occurs in
    hex; replacing inside hashes again and again grew a text to millions of characters)."""
    present = sorted((value for value in values if value in text), key=len, reverse=True)
    if not present:
        return text
    pattern = re.compile("|".join([SHOWN_HASH.pattern, *(re.escape(value) for value in present)]))
    return pattern.sub(
        lambda m: values.get(m.group(0), m.group(0)) if not SHOWN_HASH.fullmatch(m.group(0)) else m.group(0), text
    )


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
SELECT s.job_id, j.reference_id, j.description, j.display_name, j.errors
FROM sized s LEFT JOIN jobs j ON j.id = s.job_id
WHERE s.running_total - s.n < $3
"""

FINISH = """
WITH finished AS (
    DELETE FROM retention_queue q WHERE q.job_id = ANY($1::bigint[])
    AND NOT EXISTS (SELECT 1 FROM job_identities ji WHERE ji.job_id = q.job_id AND ji.value IS NOT NULL)
    RETURNING q.job_id
)
SELECT job_id FROM finished
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
        jobs = {
            row["job_id"]: row for row in await connection.fetch(CHOOSE_DUE_JOBS, retention, max_jobs, max_identities)
        }
        if not jobs:
            return 0, 0
        rows = await connection.fetch(
            "SELECT job_id, seq, namespace, value FROM job_identities"
            " WHERE job_id = ANY($1::bigint[]) AND value IS NOT NULL ORDER BY job_id, seq LIMIT $2",
            list(jobs),
            max_identities,
        )
        hashes = [identity_hash(key, row["namespace"], row["value"]) for row in rows]
        await connection.execute(
            """
            UPDATE job_identities ji SET value = NULL, value_hash = x.h
            FROM unnest($1::bigint[], $2::int[], $3::bytea[]) AS x(job_id, seq, h)
            WHERE ji.job_id = x.job_id AND ji.seq = x.seq
            """,
            [row["job_id"] for row in rows],
            [row["seq"] for row in rows],
            hashes,
        )
        shown: dict[int, dict[str, str]] = defaultdict(dict)
        for row, digest in zip(rows, hashes, strict=True):
            shown[row["job_id"]][row["value"]] = shown_hash(digest)
        await _scrub_failure_reasons(connection, rows, hashes)
        done = {row["job_id"] for row in await connection.fetch(FINISH, list(jobs))}
        await _scrub_job_text(connection, key, jobs, shown, done)
    return len(done), len(rows)


async def _scrub_job_text(
    connection: asyncpg.Connection,
    key: bytes,
    jobs: dict[int, asyncpg.Record],
    shown: dict[int, dict[str, str]],
    done: set[int],
) -> None:
    """Replace this step's identity values in the jobs' text, and their reference ids (at
    the first step of a job, so that its text reads the same hash throughout); a job whose
    last value was just hashed is marked hashed."""
    updates = []
    values_by_job: dict[int, dict[str, str]] = {}
    for job_id, row in jobs.items():
        if row["description"] is None or (job_id not in shown and job_id not in done):
            continue  # the job is gone, or nothing of it in this step
        values = dict(shown.get(job_id, {}))
        reference = row["reference_id"]
        if reference is not None and not reference.startswith(HASHED_PREFIX):
            values[reference] = shown_hash(identity_hash(key, REFERENCE_NAMESPACE, reference))
            reference = values[reference]
        values_by_job[job_id] = values
        # As JSON text: asyncpg takes a list inside an array parameter for a dimension of
        # the array, and a step with one job's errors beside another's NULL was refused.
        errors = json.dumps([redact(error, values) for error in row["errors"]]) if row["errors"] else None
        updates.append(
            (
                job_id,
                reference,
                redact(row["description"], values),
                redact(row["display_name"], values),
                errors,
                job_id in done,
            )
        )
    if updates:
        await connection.execute(
            """
            UPDATE jobs j SET reference_id = u.reference_id, description = u.description,
                              display_name = u.display_name, errors = u.errors::jsonb,
                              identities_hashed_at = CASE WHEN u.done THEN now() ELSE j.identities_hashed_at END
            FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[])
                AS u(id, reference_id, description, display_name, errors, done)
            WHERE j.id = u.id
            """,
            *(list(column) for column in zip(*updates, strict=True)),
        )
        await _scrub_errors(connection, values_by_job)


async def _scrub_errors(connection: asyncpg.Connection, values_by_job: dict[int, dict[str, str]]) -> None:
    """Error texts come from products (an external one may quote what it failed on):
    the job's per-product and per-chunk errors lose the identity values too."""
    rows = await connection.fetch(
        "SELECT 'product' AS kind, job_id, product, 0 AS chunk_no, error FROM product_status"
        " WHERE job_id = ANY($1::bigint[]) AND error IS NOT NULL"
        " UNION ALL SELECT 'chunk', job_id, product, chunk_no, error FROM task_chunks"
        " WHERE job_id = ANY($1::bigint[]) AND error IS NOT NULL",
        list(values_by_job),
    )
    changed = [
        (row["kind"], row["job_id"], row["product"], row["chunk_no"], text)
        for row in rows
        if (text := redact(row["error"], values_by_job[row["job_id"]])) != row["error"]
    ]
    for kind, table, key in (
        ("product", "product_status", ""),
        ("chunk", "task_chunks", " AND t.chunk_no = u.chunk_no"),
    ):
        subset = [change[1:] for change in changed if change[0] == kind]
        if subset:
            await connection.execute(
                f"UPDATE {table} t SET error = u.error"  # noqa: S608 - two fixed table names
                " FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[]) AS u(job_id, product, chunk_no, error)"
                f" WHERE t.job_id = u.job_id AND t.product = u.product{key}",
                *(list(column) for column in zip(*subset, strict=True)),
            )


async def _scrub_failure_reasons(
    connection: asyncpg.Connection, rows: list[asyncpg.Record], hashes: list[bytes]
) -> None:
    """A product's reason for an identity's failure (identity_failures) may quote that
    identity: it reads the identity's hash instead, in the step that hashes its value."""
    await connection.execute(
        """
        UPDATE identity_failures f SET reason = replace(f.reason, x.value, x.shown)
        FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[]) AS x(job_id, seq, value, shown)
        WHERE f.job_id = ANY($5::bigint[]) AND f.job_id = x.job_id AND f.seq = x.seq AND strpos(f.reason, x.value) > 0
        """,
        [row["job_id"] for row in rows],
        [row["seq"] for row in rows],
        [row["value"] for row in rows],
        [shown_hash(digest) for digest in hashes],
        sorted({row["job_id"] for row in rows}),
    )


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
