"""Property-based requests from /openapi.json against a running API: no 5xx, and every
answer matches the documented schema and status codes."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import PRODUCTS
from worker.api.app import create_app
from worker.products import ProductsFile, load_products
from worker.settings import Settings
from worker.store.api_keys import create_key
from worker.store.projects import create_project

# The document as the app publishes it; building it needs no database.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(), ProductsFile()).openapi())


@dataclass(frozen=True)
class RunningApi:
    url: str
    key: str
    project_key: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def running_api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningApi]:
    products_file = tmp_path_factory.mktemp("schemathesis") / "products.toml"
    products_file.write_text(PRODUCTS)
    load_products(products_file)
    connection = await asyncpg.connect(database_url)
    try:
        org = f"org-fuzz-{secrets.token_hex(3)}"
        _, project_key = await create_project(connection, org, "fuzz")
        key = await create_key(connection, org)
    finally:
        await connection.close()
    port = free_port()
    env = {**os.environ, "DELETION_DATABASE_URL": database_url, "DELETION_PRODUCTS_FILE": str(products_file),
           "DELETION_LOG_LEVEL": "warning", "DELETION_TOPOLOGY_PREFIX": f"tfuzz{secrets.token_hex(3)}"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", "from worker.cli import main; main()", "api", "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                try:
                    await client.get(f"{url}/healthz")
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "API did not start"
                    await asyncio.sleep(0.2)
        yield RunningApi(url, key, project_key)
    finally:
        process.terminate()
        process.wait(30)


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any], running_api: RunningApi) -> None:
    # Half the cases address the real project, so they reach past the 404 of an unknown key.
    if case.path_parameters and "projectKey" in case.path_parameters and len(case.path_parameters["projectKey"]) % 2:
        case.path_parameters["projectKey"] = running_api.project_key
    headers = {"Authorization": f"Bearer {running_api.key}"}
    if case.headers and "x-sandbox-name" in case.headers:
        headers["x-sandbox-name"] = running_api.project_key
    # Generated data the schema allows may still name things that do not exist (404).
    case.call_and_validate(base_url=running_api.url, headers=headers, excluded_checks=[positive_data_acceptance])
