"""Webhook subscriptions over the API: made with a secret shown once, listed without it,
removed; other organizations see nothing; URLs and event types are checked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import structlog

from tests.api.conftest import Tenant
from worker.api.app import create_app
from worker.products import load_products
from worker.settings import Settings
from worker.webhooks.crypto import SecretBox

HOOK = "https://hooks.example.com/deletion"


@pytest.fixture
async def private_client(pool: asyncpg.Pool, api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API of a deployment that allows private destinations (as the tests' receivers need)."""
    settings = api_settings.model_copy(update={"webhook_allow_private": True})
    app = create_app(settings, load_products(settings.products_file), pool=pool)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
        yield http


async def test_subscribe_list_rotate_and_remove(
    private_client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: Tenant, api_settings: Settings
) -> None:
    base = f"/public/{tenant.project_key}/webhooks"
    with structlog.testing.capture_logs() as logs:
        created = await private_client.post(
            base,
            headers=tenant.bearer,
            json={"url": "http://127.0.0.1:9/hook", "eventTypes": ["job.*", "product.*.failed"], "description": "ops"},
        )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    secret = data["secret"]
    assert secret.startswith("whsec_")
    assert data["eventTypes"] == ["job.*", "product.*.failed"]
    assert data["activeSecrets"] == 1
    assert secret not in repr(logs)
    # Stored sealed, never in plaintext.
    sealed = await pool.fetchval(
        "SELECT sealed FROM webhook_secrets WHERE subscription_id = $1::uuid", data["webhookId"]
    )
    assert secret.encode() not in sealed
    assert SecretBox.from_settings(api_settings).open(sealed) == secret

    listed = (await private_client.get(base, headers=tenant.bearer)).json()["data"]
    assert [item["webhookId"] for item in listed] == [data["webhookId"]]
    assert "secret" not in listed[0]
    one = await private_client.get(f"{base}/{data['webhookId']}", headers=tenant.bearer)
    assert one.json()["data"]["url"] == "http://127.0.0.1:9/hook"

    rotated = await private_client.post(f"{base}/{data['webhookId']}/rotate", headers=tenant.bearer)
    assert rotated.status_code == 200
    new_secret = rotated.json()["data"]["secret"]
    assert new_secret not in (None, secret)
    assert rotated.json()["data"]["activeSecrets"] == 2
    assert rotated.json()["data"]["rotationEndsAt"] is not None
    retired = await private_client.post(
        f"{base}/{data['webhookId']}/rotate", headers=tenant.bearer, json={"retireOld": True}
    )
    assert retired.json()["data"] | {"secret": None} == retired.json()["data"]
    assert retired.json()["data"]["activeSecrets"] == 1

    removed = await private_client.delete(f"{base}/{data['webhookId']}", headers=tenant.bearer)
    assert removed.status_code == 200
    assert (await private_client.get(base, headers=tenant.bearer)).json()["data"] == []
    again = await private_client.delete(f"{base}/{data['webhookId']}", headers=tenant.bearer)
    assert again.status_code == 404


async def test_other_organizations_see_nothing(
    private_client: httpx.AsyncClient, tenant: Tenant, stranger: Tenant
) -> None:
    created = await private_client.post(
        f"/public/{tenant.project_key}/webhooks", headers=tenant.bearer, json={"url": "http://127.0.0.1:9/hook"}
    )
    webhook_id = created.json()["data"]["webhookId"]
    assert created.json()["data"]["eventTypes"] == ["*"]
    for method, path in [
        ("GET", f"/public/{tenant.project_key}/webhooks"),
        ("GET", f"/public/{tenant.project_key}/webhooks/{webhook_id}"),
        ("DELETE", f"/public/{tenant.project_key}/webhooks/{webhook_id}"),
        ("POST", f"/public/{tenant.project_key}/webhooks/{webhook_id}/rotate"),
        ("POST", f"/public/{tenant.project_key}/callback-secret"),
    ]:
        answer = await private_client.request(method, path, headers=stranger.bearer)
        assert answer.status_code == 404, (method, path)
        assert answer.json() == {"error": "not_found", "message": "project not found"}
    # Their own project does not reach this subscription either.
    theirs = await private_client.delete(
        f"/public/{stranger.project_key}/webhooks/{webhook_id}", headers=stranger.bearer
    )
    assert theirs.json() == {"error": "not_found", "message": "webhook not found"}
    assert (
        await private_client.get(f"/public/{tenant.project_key}/webhooks/nope", headers=tenant.bearer)
    ).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "http://127.0.0.1:9/hook"}, "loopback"),
        ({"url": "https://10.0.0.1/hook"}, "private"),
        ({"url": "https://169.254.169.254/latest"}, "link-local"),
        ({"url": "https://user:pw@hooks.example.com/"}, "credentials"),
        ({"url": "ftp://hooks.example.com/"}, "url"),
        ({"url": "https://does-not-resolve.invalid/"}, "does not resolve"),
        ({"url": HOOK, "eventTypes": ["job.finished"]}, "eventTypes"),
        ({"url": HOOK, "eventTypes": []}, "eventTypes"),
        ({"url": HOOK, "secret": "mine"}, "cannot be set here"),
    ],
)
async def test_refused_subscriptions(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], message: str
) -> None:
    answer = await client.post(f"/public/{tenant.project_key}/webhooks", headers=tenant.bearer, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert message in answer.json()["message"]
    assert "pw" not in answer.json()["message"]


async def test_the_callback_secret_is_made_once_and_rotated_on_request(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    path = f"/public/{tenant.project_key}/callback-secret"
    first = await client.post(path, headers=tenant.bearer)
    assert first.status_code == 200
    assert first.json()["data"]["secret"].startswith("whsec_")
    assert first.json()["data"]["activeSecrets"] == 1
    refused = await client.post(path, headers=tenant.bearer)
    assert refused.status_code == 400
    assert refused.json()["error"] == "refused"
    rotated = await client.post(path, headers=tenant.bearer, json={"rotate": True})
    assert rotated.json()["data"]["activeSecrets"] == 2
    assert rotated.json()["data"]["secret"] != first.json()["data"]["secret"]
    retired = await client.post(path, headers=tenant.bearer, json={"retireOld": True})
    assert retired.json()["data"] == {"secret": None, "activeSecrets": 1, "rotationEndsAt": None}
