"""The demo that `deletion-worker up` sets up, so a new user sees a deletion happen.

It creates a small `demo` schema with rows for a few users (the demo products file
deletes from these tables) and a demo project whose key `up` prints.
"""

from __future__ import annotations

import asyncpg

from worker.store.projects import create_project

DEMO_ORG = "demo"
DEMO_PROJECT = "demo"
DEMO_USERS = ("alice@example.com", "bob@example.com", "carol@example.com")

DEMO_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS demo;
CREATE TABLE IF NOT EXISTS demo.sessions (
    id bigserial PRIMARY KEY, user_id text NOT NULL, started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON demo.sessions (user_id);
CREATE TABLE IF NOT EXISTS demo.events (id bigserial PRIMARY KEY, user_id text NOT NULL, name text NOT NULL);
CREATE INDEX IF NOT EXISTS events_user_idx ON demo.events (user_id);
CREATE TABLE IF NOT EXISTS demo.profiles (user_id text PRIMARY KEY, display_name text NOT NULL);
CREATE TABLE IF NOT EXISTS demo.profile_attributes (user_id text NOT NULL, key text NOT NULL, value text NOT NULL);
CREATE INDEX IF NOT EXISTS profile_attributes_user_idx ON demo.profile_attributes (user_id);
"""


async def ensure_demo_schema(connection: asyncpg.Connection) -> None:
    await connection.execute(DEMO_SCHEMA)


async def seed_demo_rows(connection: asyncpg.Connection, users: tuple[str, ...] = DEMO_USERS) -> None:
    """Give each user a few rows in every demo table (again, if a deletion removed them)."""
    async with connection.transaction():
        for user in users:
            await connection.execute(
                "INSERT INTO demo.profiles (user_id, display_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                user,
                user.split("@")[0].title(),
            )
            if await connection.fetchval("SELECT count(*) FROM demo.sessions WHERE user_id = $1", user) == 0:
                await connection.executemany("INSERT INTO demo.sessions (user_id) VALUES ($1)", [(user,)] * 3)
                await connection.executemany(
                    "INSERT INTO demo.events (user_id, name) VALUES ($1, $2)",
                    [(user, name) for name in ("login", "view", "logout")],
                )
                await connection.execute(
                    "INSERT INTO demo.profile_attributes (user_id, key, value) VALUES ($1, 'plan', 'free')", user
                )


async def ensure_demo_project(connection: asyncpg.Connection) -> str:
    key: str | None = await connection.fetchval(
        "SELECT key FROM projects WHERE org_id = $1 AND name = $2 ORDER BY id LIMIT 1", DEMO_ORG, DEMO_PROJECT
    )
    if key is None:
        _, key = await create_project(connection, DEMO_ORG, DEMO_PROJECT)
    return key
