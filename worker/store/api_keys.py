"""Organization API keys: shown once at creation, stored only as a hash.

A key looks like `dwk_<prefix>_<secret>`. The prefix (not secret) finds the row; the
whole key is compared by hash in constant time. A plain SHA-256 suffices because keys
are 256 random bits: there is nothing to brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

import asyncpg

from worker.store.projects import ensure_organization

KEY_SCHEME = "dwk"
PREFIX_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 8


@dataclass(frozen=True)
class ApiKeyOwner:
    key_id: int
    org_id: str
    prefix: str
    operator: bool = False  # may also see queues and dead letters across organizations


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def split_key(key: str) -> str | None:
    """The prefix of a well-formed key, or None."""
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    return prefix


async def create_key(connection: asyncpg.Connection, org_id: str, operator: bool = False) -> str:
    """Create a key for the organization (created if new); the only time it is visible.
    An operator key (migrations/0014) also sees the deployment's queues and dead letters."""
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    async with connection.transaction():
        await ensure_organization(connection, org_id)
        await connection.execute(
            "INSERT INTO api_keys (org_id, prefix, key_hash, operator) VALUES ($1, $2, $3, $4)",
            org_id,
            prefix,
            hash_key(key),
            operator,
        )
    return key


async def revoke_key(connection: asyncpg.Connection, prefix: str) -> bool:
    """Revoke by prefix (`dwk_<prefix>` or the bare prefix); False when no live key has it."""
    bare = prefix.removeprefix(f"{KEY_SCHEME}_").split("_")[0]
    status: str = await connection.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1 AND revoked_at IS NULL", bare
    )
    return status.endswith(" 1")


async def verify_key(connection: asyncpg.Connection, key: str) -> ApiKeyOwner | None:
    prefix = split_key(key)
    if prefix is None:
        return None
    row = await connection.fetchrow(
        "SELECT id, org_id, key_hash, operator FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL", prefix
    )
    if row is None or not hmac.compare_digest(bytes(row["key_hash"]), hash_key(key)):
        return None
    return ApiKeyOwner(
        key_id=row["id"], org_id=row["org_id"], prefix=f"{KEY_SCHEME}_{prefix}", operator=row["operator"]
    )


async def live_key(connection: asyncpg.Connection, key_id: int) -> ApiKeyOwner | None:
    """The owner of a key by id while it is not revoked: a console session re-checks its
    key with this, so revoking a key ends its sessions too."""
    row = await connection.fetchrow(
        "SELECT id, org_id, prefix, operator FROM api_keys WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    if row is None:
        return None
    return ApiKeyOwner(
        key_id=row["id"], org_id=row["org_id"], prefix=f"{KEY_SCHEME}_{row['prefix']}", operator=row["operator"]
    )


async def org_keys(connection: asyncpg.Connection, org_id: str) -> list[dict[str, object]]:
    """The organization's keys (prefix, kind, when created and revoked), newest first."""
    rows = await connection.fetch(
        "SELECT id, prefix, operator, created_at, revoked_at FROM api_keys WHERE org_id = $1 ORDER BY id DESC", org_id
    )
    return [dict(row) for row in rows]


async def revoke_org_key(connection: asyncpg.Connection, org_id: str, key_id: int) -> bool:
    status: str = await connection.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND org_id = $2 AND revoked_at IS NULL", key_id, org_id
    )
    return status.endswith(" 1")
