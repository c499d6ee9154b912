"""Organizations and projects."""

from __future__ import annotations

import secrets
import string

import asyncpg

# Project keys look like the seeds' (`3sWXSsqHgSKnE87YkNJK`): 20 characters of [A-Za-z0-9].
PROJECT_KEY_ALPHABET = string.ascii_letters + string.digits
PROJECT_KEY_LENGTH = 20


def new_project_key() -> str:
    return "".join(secrets.choice(PROJECT_KEY_ALPHABET) for _ in range(PROJECT_KEY_LENGTH))


async def ensure_organization(connection: asyncpg.Connection, org_id: str) -> None:
    await connection.execute("INSERT INTO organizations (id) VALUES ($1) ON CONFLICT DO NOTHING", org_id)


async def create_project(connection: asyncpg.Connection, org_id: str, name: str) -> tuple[int, str]:
    """Create a project (and its organization if new); returns (projectId, projectKey)."""
    async with connection.transaction():
        await ensure_organization(connection, org_id)
        key = new_project_key()
        project_id: int = await connection.fetchval(
            "INSERT INTO projects (key, org_id, name) VALUES ($1, $2, $3) RETURNING id", key, org_id, name
        )
    return project_id, key


async def project_ids_by_key(connection: asyncpg.Connection, keys: list[str]) -> dict[str, int]:
    rows = await connection.fetch("SELECT key, id FROM projects WHERE key = ANY($1::text[])", keys)
    return {row["key"]: row["id"] for row in rows}
