"""Which identities of a job failed, per product, page by page.

Two sources, merged in (product, seq) order, the order identities were given in:
- identity_failures: the identities a product named as failed (worker.store.acks);
- the seq range of each chunk that failed as a whole (no names given): every identity
  the chunk carried failed. These are generated from the range, never stored.

A page is found in the indexes alone and only its rows are joined to job_identities:
`after` (the last (product, seq) seen) pages on at any depth; an offset is served up to
MAX_OFFSET rows like the other lists. Identity values are shown while the job keeps
them; after retention only their keyed hashes (worker.store.retention).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from worker.store.reads import MAX_OFFSET

# Before every product name ("" sorts first in the C collation) and every seq.
START = ("", -1)

LIST_FAILED = """
WITH listed AS (
    (SELECT f.product, f.seq, f.chunk_no, f.reason, f.failed_at FROM identity_failures f
     WHERE f.job_id = $1 AND ($2::text IS NULL OR f.product = $2) AND (f.product, f.seq) > ($3::text, $4::int)
     ORDER BY f.product, f.seq LIMIT $5)
    UNION ALL
    (SELECT c.product, s.seq, c.chunk_no, c.error, c.acked_at FROM task_chunks c
     CROSS JOIN LATERAL (
         SELECT generate_series(CASE WHEN c.product = $3 THEN greatest(c.seq_from, $4 + 1) ELSE c.seq_from END,
                                c.seq_to - 1) AS seq
         LIMIT $5) AS s
     WHERE c.job_id = $1 AND ($2::text IS NULL OR c.product = $2) AND c.status = 'failed'
       AND c.failures_listed IS NOT TRUE AND (c.product, c.seq_to - 1) > ($3::text, $4::int))
), page AS (
    SELECT * FROM listed ORDER BY product, seq LIMIT $6 OFFSET $7
)
SELECT p.product, p.seq, p.reason, p.failed_at, ji.namespace, ji.value, ji.value_hash,
       coalesce(c.status = 'waiting', false) AS retrying
FROM page p
JOIN job_identities ji ON ji.job_id = $1 AND ji.seq = p.seq
LEFT JOIN task_chunks c ON c.job_id = $1 AND c.product = p.product AND c.chunk_no = p.chunk_no
ORDER BY p.product, p.seq
"""


@dataclass(frozen=True)
class FailedIdentityRow:
    product: str
    seq: int
    namespace: str
    value: str | None  # None once retention replaced it
    value_hash: bytes | None
    reason: str | None
    failed_at: datetime | None
    retrying: bool  # sent again and not yet settled


class OffsetTooDeepError(ValueError):
    pass


async def list_failed_identities(
    connection: asyncpg.Connection,
    job_id: int,
    *,
    product: str | None,
    limit: int,
    offset: int = 0,
    after: tuple[str, int] | None = None,
) -> list[FailedIdentityRow]:
    """A page of the job's failed identities (of one product, or of all), by product and
    then in the order they were given."""
    if offset > MAX_OFFSET:
        raise OffsetTooDeepError(f"pages deeper than {MAX_OFFSET} items: pass `after` instead")
    after_product, after_seq = after or START
    rows = await connection.fetch(LIST_FAILED, job_id, product, after_product, after_seq, offset + limit, limit, offset)
    return [
        FailedIdentityRow(
            row["product"],
            row["seq"],
            row["namespace"],
            row["value"],
            row["value_hash"],
            row["reason"],
            row["failed_at"],
            row["retrying"],
        )
        for row in rows
    ]


async def failed_identity_counts(connection: asyncpg.Connection, job_id: int) -> dict[str, int]:
    """Per product, how many of the job's identities failed at their latest attempt."""
    rows = await connection.fetch(
        "SELECT product, coalesce(identities_failed, 0) AS n FROM product_status WHERE job_id = $1 ORDER BY product",
        job_id,
    )
    return {row["product"]: row["n"] for row in rows}


def cursor_of(row: FailedIdentityRow) -> str:
    """The `after` that continues past this row: `<seq>:<product>` (a product name may
    hold any character but a seq never holds a colon)."""
    return f"{row.seq}:{row.product}"


def parse_cursor(text: str) -> tuple[str, int] | None:
    seq, sep, product = text.partition(":")
    if not sep or not seq.lstrip("-").isdigit():
        return None
    return product, int(seq)
