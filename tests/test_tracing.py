"""Traces across roles: W3C trace context in message headers, spans recorded in memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support import WorkerHandle, job_ids_for, publish, request, wait_for_jobs
from worker import tracing
from worker.amqp.topology import Topology
from worker.settings import Settings

PRODUCTS = """
[products.sessions]
handler = "postgres"
statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1::text[])"]
namespaces = ["userId"]
"""


def _one(found: list[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    matching = [span for span in found if span.name == name and span.kind is kind]
    assert len(matching) == 1, (name, [span.name for span in found])
    return matching[0]


def _context_of(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def _parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    return None if span.parent is None else (span.parent.trace_id, span.parent.span_id)


def _ids(span: ReadableSpan) -> list[str]:
    """The trace and span id as a `traceparent` spells them (its flags vary by SDK)."""
    trace_id, span_id = _context_of(span)
    return [f"{trace_id:032x}", f"{span_id:016x}"]


def _links_of(span: ReadableSpan) -> set[tuple[int, int]]:
    return {(link.context.trace_id, link.context.span_id) for link in span.links}


async def _spans_named(exporter: InMemorySpanExporter, name: str, timeout: float = 5.0) -> list[ReadableSpan]:
    """The finished spans, once one called `name` is among them (a batch span ends just
    after the commit the test waited for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(exporter.get_finished_spans())
        if any(span.name == name for span in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no span {name}")


async def test_a_request_is_traced_from_its_publish_through_intake_the_product_and_acks(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
    spans: InMemorySpanExporter,
) -> None:
    settings = make_settings(PRODUCTS)
    topology = Topology.for_settings(settings, ["sessions"])
    await run_worker(settings)
    _, key = await make_project()
    deletion = request(key, "traced@example.com")
    await publish(settings, [deletion])
    job_ids = await job_ids_for(pool, [deletion.request_id])
    assert set((await wait_for_jobs(pool, job_ids)).values()) == {"completed"}
    found = await _spans_named(spans, f"process {topology.acks.main}")

    # The producer had no span of its own: the request starts its trace.
    published = _one(found, f"publish {topology.requests.main}", SpanKind.PRODUCER)
    assert published.parent is None
    # Intake handles a batch: its span links the request's context.
    intake = _one(found, f"process {topology.requests.main}", SpanKind.CONSUMER)
    assert _context_of(published) in _links_of(intake)
    # The job kept the request's context; the dispatch round sending its task links it,
    # and the task's publish is the round's child.
    kept = await pool.fetchval("SELECT trace_parent FROM jobs WHERE id = $1", job_ids[0])
    assert kept.split("-")[1:3] == _ids(published)
    dispatch = _one(found, "dispatch", SpanKind.INTERNAL)
    assert _context_of(published) in _links_of(dispatch)
    task_published = _one(found, "publish sessions", SpanKind.PRODUCER)
    assert _parent_of(task_published) == _context_of(dispatch)
    # The product task continues the trace its dispatch publish started...
    product = _one(found, f"process {topology.product('sessions').main}", SpanKind.CONSUMER)
    assert _parent_of(product) == _context_of(task_published)
    # ...into the acknowledgement it publishes, which the acks batch links.
    ack_published = _one(found, f"publish {topology.acks.main}", SpanKind.PRODUCER)
    assert _parent_of(ack_published) == _context_of(product)
    acks = _one(found, f"process {topology.acks.main}", SpanKind.CONSUMER)
    assert _context_of(ack_published) in _links_of(acks)


@dataclass(frozen=True)
class _Message:
    headers: Mapping[str, Any]


def test_a_batch_span_links_every_message_and_log_lines_carry_its_trace_id(spans: InMemorySpanExporter) -> None:
    outgoing = tracing.traced_headers([("q", {"x-attempt": 1}), ("q", {})])
    assert all(headers["traceparent"].startswith("00-") for headers in outgoing)
    assert outgoing[0]["x-attempt"] == 1
    with tracing.batch_span("q", [_Message(headers) for headers in outgoing]):
        line = tracing.add_trace_ids(None, "info", {"event": "batch_done"})

    publishes = [span for span in spans.get_finished_spans() if span.name == "publish q"]
    batch = _one(list(spans.get_finished_spans()), "process q", SpanKind.CONSUMER)
    assert _links_of(batch) == {_context_of(span) for span in publishes}
    assert line["trace_id"] == format(_context_of(batch)[0], "032x")
    assert line["span_id"] == format(_context_of(batch)[1], "016x")


def test_off_there_are_no_spans_no_headers_and_no_trace_ids() -> None:
    assert not tracing.enabled()
    assert tracing.current_traceparent() is None
    assert tracing.traceparent_of({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    with tracing.linked_span("dispatch", ["00-" + "1" * 32 + "-" + "2" * 16 + "-01"]):
        pass
    with tracing.batch_span("q", [_Message({})]), tracing.message_span("q", _Message({})):
        assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
