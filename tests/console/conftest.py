"""Console fixtures: the API with the console over the test database, organizations with
a project and a key (operator or not), signed-in clients; all removed afterwards."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from worker.console.app import create_console_app
from worker.products import load_products
from worker.settings import Settings
from worker.store.api_keys import create_key
from worker.store.jobs import JobSizing, NewJob, create_jobs

PRODUCTS = """
[products.sessions]
handler = "postgres"
namespaces = ["userId", "email"]
display_name = "Session Replay"
statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1::text[])"]

[products.profiles]
handler = "postgres"
namespaces = ["userId", "email"]
display_name = "Profile Service"
statements = ["DELETE FROM demo.profiles WHERE user_id = ANY($1::text[])"]
"""
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Member:
    """An organization with one project and a key."""

    org: str
    key: str
    project_id: int
    project_key: str


@pytest.fixture
def console_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(PRODUCTS)


@pytest.fixture
def console_app(pool: asyncpg.Pool, console_settings: Settings) -> FastAPI:
    return create_console_app(console_settings, load_products(console_settings.products_file), pool=pool)


@pytest.fixture
async def make_member(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> AsyncIterator[Callable[..., Awaitable[Member]]]:
    prefixes: list[str] = []

    async def make(org: str, operator: bool = False, project_name: str = "web shop") -> Member:
        project_id, project_key = await make_project(org=org, name=project_name)
        async with pool.acquire() as connection:
            key = await create_key(connection, org, operator=operator)
        prefixes.append(key.split("_")[1])
        return Member(org, key, project_id, project_key)

    yield make
    await pool.execute("DELETE FROM api_keys WHERE prefix = ANY($1::text[])", prefixes)


def csrf_of(page: str) -> str:
    found = CSRF_INPUT.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture
def make_client(console_app: FastAPI) -> Callable[..., httpx.AsyncClient]:
    def make(base_url: str = "http://console.test") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=console_app), base_url=base_url)

    return make


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    page = await client.get("/console/sign-in")
    return await client.post("/console/sign-in", data={"key": key, "csrf": csrf_of(page.text)})


async def insert_job(pool: asyncpg.Pool, member: Member, identities: list[tuple[str, str]], **fields: object) -> int:
    """A work order straight into the store (scheduled: nothing dispatches it in these tests)."""
    job = NewJob(
        request_id=f"console-test-{uuid.uuid4()}",
        project_id=member.project_id,
        identities=identities,
        action="delete_identity",
        **fields,  # type: ignore[arg-type]
    )
    async with pool.acquire() as connection:
        created = await create_jobs(connection, [job], ["sessions", "profiles"], None, JobSizing())
    return created[job.key]
