"""Bodies the API parses itself: the same answers as FastAPI's own parsing, and the same
document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from tests.api.conftest import Tenant
from tests.api.test_workorders import headers, order
from worker.api.app import create_app
from worker.products import ProductsFile
from worker.settings import Settings


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_describes_self_parsed_bodies_and_every_reference_resolves() -> None:
    document = create_app(Settings(), ProductsFile()).openapi()
    body = document["paths"]["/workorder"]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/WorkOrderCreate"
    schemas = document["components"]["schemas"]
    assert schemas["WorkOrderCreate"]["properties"]["identities"]["maxItems"] == 100_000
    prefix = "#/components/schemas/"
    dangling = {ref for ref in _refs(document) if not ref.startswith(prefix) or ref[len(prefix) :] not in schemas}
    assert not dangling


async def test_bodies_missing_or_sent_as_a_json_subtype(client: httpx.AsyncClient, tenant: Tenant) -> None:
    empty = await client.post(
        "/workorder", content=b"", headers={**headers(tenant), "content-type": "application/json"}
    )
    assert empty.status_code == 400
    assert empty.json() == {"error": "bad_request", "message": "body: Field required"}
    subtype = await client.post(
        "/workorder",
        content=httpx.Request("POST", "/", json=order()).content,
        headers={**headers(tenant), "content-type": "application/vnd.example+json"},
    )
    assert subtype.status_code == 200, subtype.text
