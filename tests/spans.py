"""Reading the spans a test recorded with the in-memory exporter (the `spans` fixture)."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


def one(found: list[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    matching = [span for span in found if span.name == name and span.kind is kind]
    assert len(matching) == 1, (name, [span.name for span in found])
    return matching[0]


def context_of(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    return None if span.parent is None else (span.parent.trace_id, span.parent.span_id)


def ids(span: ReadableSpan) -> list[str]:
    """The trace and span id as a `traceparent` spells them (its flags vary by SDK)."""
    trace_id, span_id = context_of(span)
    return [f"{trace_id:032x}", f"{span_id:016x}"]


def links_of(span: ReadableSpan) -> set[tuple[int, int]]:
    return {(link.context.trace_id, link.context.span_id) for link in span.links}


async def spans_named(exporter: InMemorySpanExporter, name: str, timeout: float = 5.0) -> list[ReadableSpan]:
    """The finished spans, once one called `name` is among them (a batch span ends just
    after the commit the test waited for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(exporter.get_finished_spans())
        if any(span.name == name for span in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no span {name}")
