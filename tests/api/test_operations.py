"""Probes, metrics, the OpenAPI document, unknown routes, and keys from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.api.conftest import Tenant
from worker.api import health
from worker.settings import Settings

CLI = [sys.executable, "-c", "from worker.cli import main; main()"]


async def test_health_ready_and_metrics_need_no_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    await client.get(f"/public/{tenant.project_key}/jobs", headers=tenant.bearer)
    metrics = (await client.get("/metrics")).text
    assert 'deletion_api_requests_total{method="GET",route="/public/{projectKey}/jobs",status="200"}' in metrics
    assert tenant.project_key not in metrics  # route templates, never raw paths


async def test_readyz_checks_the_broker_at_most_every_few_seconds(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: every unauthenticated call to /readyz opened an AMQP connection."""
    opened: list[str] = []
    real = health.connect  # type: ignore[attr-defined]  # the name the module calls, patched below

    async def counting(url: str, **options: Any) -> Any:
        opened.append(url)
        return await real(url, **options)

    monkeypatch.setattr(health, "connect", counting)
    monkeypatch.setattr(health, "READY_CACHE_SECONDS", 60.0)
    answers = [(await client.get("/readyz")).status_code for _ in range(20)]
    assert set(answers) == {200}
    assert len(opened) <= 1


async def test_openapi_documents_every_route_and_body(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    for path in (
        "/public/{projectKey}/jobs",
        "/public/{projectKey}/jobs/{jobId}",
        "/public/{projectKey}/users/{userId}",
        "/api/v1/{projectKey}/jobs",
        "/api/v1/{projectKey}/jobs/{jobId}",
        "/api/v1/{projectKey}/users/{userId}",
        "/workorder",
        "/workorder/{workorderId}",
    ):
        assert path in paths, path
    schemas = document["components"]["schemas"]
    assert {"Job", "JobEnvelope", "WorkOrder", "WorkOrderCreate", "WorkOrderUpdate", "ErrorBody"} <= set(schemas)
    assert set(schemas["Job"]["properties"]) == {
        "jobId", "description", "status", "projectId", "action", "referenceId",
        "createdAt", "updatedAt", "startAt", "errors",
        "regulation", "dueAt",  # beyond the seed: due dates
        "dryRun", "products",  # beyond the seed: dry runs, what each product did (one job's view)
    }  # fmt: skip


async def test_unknown_routes_and_methods_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no such route"}
    wrong = await client.patch("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


async def test_keys_cli_create_use_and_revoke(
    client: httpx.AsyncClient, api_settings: Settings, tenant: Tenant
) -> None:
    env = {**os.environ, "DELETION_DATABASE_URL": api_settings.database_url, "DELETION_LOG_LEVEL": "warning"}
    created = subprocess.run(
        [*CLI, "keys", "create", "--org", tenant.org], env=env, capture_output=True, text=True, check=True
    )
    key = json.loads(created.stdout)["apiKey"]
    url = f"/public/{tenant.project_key}/jobs"
    assert (await client.get(url, headers={"Authorization": f"Bearer {key}"})).status_code == 200
    prefix = "_".join(key.split("_")[:2])
    revoked = subprocess.run([*CLI, "keys", "revoke", prefix], env=env, capture_output=True, text=True, check=False)
    assert revoked.returncode == 0, revoked.stderr
    again = subprocess.run([*CLI, "keys", "revoke", prefix], env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 3  # NOT_FOUND: no live key has that prefix
    # Verified keys are remembered for a few seconds; start from a cold cache.
    client_app = client._transport.app  # type: ignore[attr-defined]
    client_app.state.key_cache = type(client_app.state.key_cache)()
    assert (await client.get(url, headers={"Authorization": f"Bearer {key}"})).status_code == 401
    assert key.split("_", 2)[2] not in revoked.stdout  # the secret is shown once, at creation
