"""With tracing on, an HTTP request is a SERVER span named by its route (never by a path
that may hold an identity), and a job it creates keeps that span's context."""

from __future__ import annotations

import asyncpg
import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.api.conftest import Tenant

ORDER = {"action": "delete_identity", "identities": [{"namespace": {"code": "email"}, "id": "t@example.com"}]}


async def test_a_work_order_keeps_the_trace_of_the_request_that_made_it(
    pool: asyncpg.Pool, client: httpx.AsyncClient, tenant: Tenant, spans: InMemorySpanExporter
) -> None:
    caller = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"  # the caller's own trace
    answer = await client.post(
        "/workorder", json=ORDER, headers={**tenant.bearer, "x-sandbox-name": tenant.project_key, "traceparent": caller}
    )
    assert answer.status_code == 200, answer.text
    [server] = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert server.name == "POST /workorder"
    assert server.context is not None
    assert server.context.trace_id == int("ab" * 16, 16)  # continues the caller's trace
    kept = await pool.fetchval("SELECT trace_parent FROM jobs WHERE workorder_id = $1", answer.json()["workorderId"])
    assert kept.split("-")[1:3] == [f"{server.context.trace_id:032x}", f"{server.context.span_id:016x}"]


async def test_a_span_is_named_by_its_route_not_by_the_identity_in_its_path(
    client: httpx.AsyncClient, tenant: Tenant, spans: InMemorySpanExporter
) -> None:
    user = "someone.private@example.com"
    answer = await client.delete(f"/public/{tenant.project_key}/users/{user}", headers=tenant.bearer)
    assert answer.status_code == 200, answer.text
    [server] = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert server.name == "DELETE /public/{projectKey}/users/{userId:path}"
    assert user not in str(server.name)
    assert all(user not in str(value) for value in (server.attributes or {}).values())


async def test_off_a_job_keeps_no_trace(pool: asyncpg.Pool, client: httpx.AsyncClient, tenant: Tenant) -> None:
    answer = await client.post(
        "/workorder", json=ORDER, headers={**tenant.bearer, "x-sandbox-name": tenant.project_key}
    )
    assert answer.status_code == 200, answer.text
    kept = await pool.fetchval("SELECT trace_parent FROM jobs WHERE workorder_id = $1", answer.json()["workorderId"])
    assert kept is None
