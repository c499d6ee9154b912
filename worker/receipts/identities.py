"""Which identities a receipt covers, without naming them.

A receipt carries the identities' keyed hashes (HMAC-SHA256 under
DELETION_IDENTITY_HASH_KEY of `namespace NUL value`, as retention stores them) and a
digest over all of them: SHA-256 of the raw 32-byte hashes sorted and concatenated. A
job of up to INLINE_HASHES identities lists the hashes in the receipt itself; a larger
one lists only the digest, and its sorted hash list (`deletion-worker receipts hashes`)
proves membership: whoever holds the list checks it against the signed digest, then
looks the identity's hash up in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

INLINE_HASHES = 1000
HASH_DESCRIPTION = "HMAC-SHA256(identity hash key, namespace NUL value)"


def identities_digest(hashes: Iterable[bytes]) -> str:
    return hashlib.sha256(b"".join(sorted(hashes))).hexdigest()


def identities_section(hashes: list[bytes]) -> dict[str, Any]:
    section: dict[str, Any] = {"count": len(hashes), "hash": HASH_DESCRIPTION, "digest": identities_digest(hashes)}
    if len(hashes) <= INLINE_HASHES:
        section["hashes"] = sorted(digest.hex() for digest in hashes)
    return section


class HashListError(ValueError):
    """A hash list that is not the one the receipt signed."""


def covers(payload: dict[str, Any], identity_hash: bytes, hash_list: list[bytes] | None = None) -> bool:
    """Whether the receipt's identities include this one. A receipt without inline hashes
    needs `hash_list`, which must match its signed digest and count (HashListError)."""
    section = payload["identities"]
    if "hashes" in section:
        return identity_hash.hex() in section["hashes"]
    if hash_list is None:
        raise HashListError("this receipt lists only a digest: give the job's identity hash list")
    if len(hash_list) != section["count"] or identities_digest(hash_list) != section["digest"]:
        raise HashListError("the hash list does not match the receipt's signed digest")
    return identity_hash in set(hash_list)
