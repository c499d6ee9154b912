"""Traces across roles: W3C trace context in message headers, spans recorded in memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.spans import context_of, ids, links_of, one, parent_of, spans_named
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
    found = await spans_named(spans, f"process {topology.acks.main}")

    # The producer had no span of its own: the request starts its trace.
    published = one(found, f"publish {topology.requests.main}", SpanKind.PRODUCER)
    assert published.parent is None
    # Intake handles a batch: its span links the request's context.
    intake = one(found, f"process {topology.requests.main}", SpanKind.CONSUMER)
    assert context_of(published) in links_of(intake)
    # The job kept the request's context; the dispatch round sending its task links it,
    # and the task's publish is the round's child.
    kept = await pool.fetchval("SELECT trace_parent FROM jobs WHERE id = $1", job_ids[0])
    assert kept.split("-")[1:3] == ids(published)
    dispatch = one(found, "dispatch", SpanKind.INTERNAL)
    assert context_of(published) in links_of(dispatch)
    task_published = one(found, "publish sessions", SpanKind.PRODUCER)
    assert parent_of(task_published) == context_of(dispatch)
    # The product task continues the trace its dispatch publish started...
    product = one(found, f"process {topology.product('sessions').main}", SpanKind.CONSUMER)
    assert parent_of(product) == context_of(task_published)
    # ...into the acknowledgement it publishes, which the acks batch links.
    ack_published = one(found, f"publish {topology.acks.main}", SpanKind.PRODUCER)
    assert parent_of(ack_published) == context_of(product)
    acks = one(found, f"process {topology.acks.main}", SpanKind.CONSUMER)
    assert context_of(ack_published) in links_of(acks)


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
    batch = one(list(spans.get_finished_spans()), "process q", SpanKind.CONSUMER)
    assert links_of(batch) == {context_of(span) for span in publishes}
    assert line["trace_id"] == format(context_of(batch)[0], "032x")
    assert line["span_id"] == format(context_of(batch)[1], "016x")


def test_off_there_are_no_spans_no_headers_and_no_trace_ids() -> None:
    assert not tracing.enabled()
    assert tracing.current_traceparent() is None
    assert tracing.traceparent_of({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    with tracing.linked_span("dispatch", ["00-" + "1" * 32 + "-" + "2" * 16 + "-01"]):
        pass
    with tracing.batch_span("q", [_Message({})]), tracing.message_span("q", _Message({})):
        assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
