"""A job's audit trail (migrations/0011): reading it, and checking its hash chain.

Entries are written only by database triggers, in the transactions that make the
changes; nothing here writes one. `verify_chain` recomputes every hash the way
`deletion_audit_hash` does in SQL, so a row edited, removed or inserted by hand (by
someone able to get past the append-only trigger) is found, and where.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson

# The `prev_hash` of a chain's first entry.
GENESIS = bytes(32)


@dataclass(frozen=True)
class AuditEntry:
    job_id: int
    seq: int
    kind: str
    at: datetime
    detail: str  # the JSON text exactly as stored and hashed
    prev_hash: bytes
    hash: bytes

    @property
    def at_text(self) -> str:
        """`at` as the hash covers it (and as the API shows it)."""
        return self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def computed_hash(self) -> bytes:
        text = f"{self.job_id}\n{self.seq}\n{self.kind}\n{self.at_text}\n{self.detail}"
        return hashlib.sha256(self.prev_hash + text.encode()).digest()


@dataclass(frozen=True)
class ChainHead:
    seq: int
    hash: bytes


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of verify_chain: `problems` is empty when the chain is whole."""

    entries: int
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        row["job_id"], row["seq"], row["kind"], row["at"], row["detail"], bytes(row["prev_hash"]), bytes(row["hash"])
    )


# One statement, so entries and head come from one snapshot.
READ_TRAIL = """
SELECT e.job_id, e.seq, e.kind, e.at, e.detail::text AS detail, e.prev_hash, e.hash,
       h.seq AS head_seq, h.hash AS head_hash
FROM audit_entries e LEFT JOIN audit_heads h ON h.job_id = e.job_id
WHERE e.job_id = $1
ORDER BY e.seq
"""


async def job_audit(connection: asyncpg.Connection, job_id: int) -> tuple[list[AuditEntry], ChainHead | None]:
    """The job's entries in chain order, and its head (the latest entry's hash as the
    head row holds it; None when the job has none)."""
    rows = await connection.fetch(READ_TRAIL, job_id)
    if rows:
        first = rows[0]
        head = ChainHead(first["head_seq"], bytes(first["head_hash"])) if first["head_seq"] is not None else None
        return [_entry(row) for row in rows], head
    row = await connection.fetchrow("SELECT seq, hash FROM audit_heads WHERE job_id = $1", job_id)
    return [], (ChainHead(row["seq"], bytes(row["hash"])) if row else None)


def verify_chain(entries: list[AuditEntry], head: ChainHead | None) -> ChainCheck:
    """Recompute the chain: each entry's hash from its content and the previous entry's
    hash, sequence numbers without gaps from 1, and the last entry equal to the head (a
    removed last entry leaves the head pointing past it)."""
    problems: list[str] = []
    previous, previous_seq = GENESIS, 0
    for entry in entries:
        if entry.seq != previous_seq + 1:
            problems.append(f"entry {entry.seq}: expected entry {previous_seq + 1} here (entries missing)")
        if entry.prev_hash != previous:
            problems.append(f"entry {entry.seq}: does not follow the entry before it (prev_hash differs)")
        if entry.computed_hash() != entry.hash:
            problems.append(f"entry {entry.seq}: its content does not match its hash (changed)")
        previous, previous_seq = entry.hash, entry.seq
    if head is None:
        if entries:
            problems.append("the chain has entries but no head")
    elif not entries or head.seq != entries[-1].seq or head.hash != entries[-1].hash:
        last = entries[-1].seq if entries else 0
        problems.append(f"the head is entry {head.seq} but the last entry is {last} (entries removed or changed)")
    return ChainCheck(len(entries), problems)


def contains_hash(entries: list[AuditEntry], digest: bytes) -> bool:
    """Whether an entry of the chain has this hash (a receipt's chain head must)."""
    return any(entry.hash == digest for entry in entries)


def entry_view(entry: AuditEntry) -> dict[str, object]:
    """An entry as the API and the CLI show it: `detailText` is what the hash covers."""
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "at": entry.at_text,
        "detail": orjson.loads(entry.detail),
        "detailText": entry.detail,
        "prevHash": entry.prev_hash.hex(),
        "hash": entry.hash.hex(),
    }
