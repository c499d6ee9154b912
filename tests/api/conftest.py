"""API fixtures: the app over the test database, API keys that are deleted afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings
from worker.store.api_keys import create_key

PRODUCTS = """
[products.sessions]
handler = "postgres"
namespaces = ["userId", "email"]
display_name = "Session Replay"
statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1::text[])"]

[products.events]
handler = "postgres"
namespaces = ["userId", "email"]
display_name = "Event Store"
statements = ["DELETE FROM demo.events WHERE user_id = ANY($1::text[])"]

[products.profiles]
handler = "postgres"
namespaces = ["userId", "email"]
display_name = "Profile Service"
statements = ["DELETE FROM demo.profiles WHERE user_id = ANY($1::text[])"]
"""


@dataclass(frozen=True)
class Tenant:
    """An organization with a project and a key."""

    org: str
    key: str
    project_id: int
    project_key: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def bare(self) -> dict[str, str]:
        return {"Authorization": self.key}


@pytest.fixture
def api_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(PRODUCTS, api_max_body_bytes=16 * 1024 * 1024)


@pytest.fixture
async def client(pool: asyncpg.Pool, api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings, load_products(api_settings.products_file), pool=pool)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


@pytest.fixture
async def make_api_key(pool: asyncpg.Pool) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    created: list[str] = []

    async def make(org: str) -> str:
        async with pool.acquire() as connection:
            key = await create_key(connection, org)
        created.append(key.split("_")[1])
        return key

    yield make
    await pool.execute("DELETE FROM api_keys WHERE prefix = ANY($1::text[])", created)


@pytest.fixture
async def make_tenant(
    make_project: Callable[..., Awaitable[tuple[int, str]]], make_api_key: Callable[[str], Awaitable[str]]
) -> Callable[[str], Awaitable[Tenant]]:
    async def make(org: str) -> Tenant:
        project_id, project_key = await make_project(org=org)
        return Tenant(org=org, key=await make_api_key(org), project_id=project_id, project_key=project_key)

    return make


@pytest.fixture
async def tenant(make_tenant: Callable[[str], Awaitable[Tenant]]) -> Tenant:
    return await make_tenant("org-a")


@pytest.fixture
async def stranger(make_tenant: Callable[[str], Awaitable[Tenant]]) -> Tenant:
    return await make_tenant("org-b")
