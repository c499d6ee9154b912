"""Errors the API did not raise on purpose: a database out of reach is 503, never 500."""

from __future__ import annotations

import asyncpg
import httpx

from worker.api.app import create_app
from worker.db import init_connection
from worker.products import load_products
from worker.settings import Settings


async def test_a_database_out_of_reach_is_503_with_retry_after(database_url: str, api_settings: Settings) -> None:
    """What a request meets between a primary's stop and a standby's promotion. The commit
    may or may not have happened, so the answer is "retry" (safe with the same
    Idempotency-Key), not an internal error claiming nothing was done."""
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=1, init=init_connection)
    assert pool is not None
    await pool.close()  # every acquire now fails as a connection would
    app = create_app(api_settings, load_products(api_settings.products_file), pool=pool)
    # Starlette re-raises what its last-resort handler answered; the client sees the answer.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        answer = await client.post(
            "/workorder",
            json={"action": "delete_identity", "identities": [{"namespace": {"code": "email"}, "id": "a@b.c"}]},
            headers={"Authorization": "Bearer dw_x", "x-sandbox-name": "p", "Idempotency-Key": "k"},
        )
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["error"] == "unavailable"
