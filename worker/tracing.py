"""OpenTelemetry traces across processes: W3C trace context in AMQP message headers.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`configure`); then spans go out over
OTLP/HTTP, batched in the background. Off means off on the message path: the publisher
and the consumers ask `enabled()` (one global read) once per batch and do no context
work at all otherwise.

On:
- every published message gets a PRODUCER span, child of whatever span is current (none
  in the thin producer: each request then starts its own trace), whose context travels
  in the message's `traceparent` header;
- a batch a consumer handles gets one CONSUMER span linking the context of every message
  it carries (a batch serves many traces, so it is the child of none);
- a message handled on its own (a product task) gets a CONSUMER span that is the child
  of the context it arrived with, so what it publishes (its acknowledgement) continues
  that trace;
- a job keeps the `traceparent` of the message or HTTP request that created it (the
  jobs table's `trace_parent`, written only when tracing is on), and a dispatch round's
  span links the traces of the jobs it sends, so a request's trace leads, by links as
  every batch does, to the tasks and acknowledgements that carried it out;
- an HTTP request gets a SERVER span (worker.api.traced);
- log lines written inside a span carry its trace and span id (`add_trace_ids`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

import structlog
from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None


class Carrier(Protocol):
    """A received message (worker.amqp.Delivery), as far as tracing reads it."""

    @property
    def headers(self) -> Mapping[str, Any]: ...


def enabled() -> bool:
    return _tracer is not None


def configure(endpoint: str | None, service: str = "deletion-worker") -> None:
    """Exports over OTLP/HTTP when an endpoint is given (the exporter reads the rest of
    the standard OTEL_* variables itself); otherwise tracing stays off."""
    if not endpoint or _tracer is not None:
        return
    # Imported here: without an endpoint a process never loads the SDK (an optional extra).
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        # Asked for traces without the extra: say so once, and run untraced rather than not at all.
        structlog.get_logger(__name__).warning("tracing_unavailable", missing="deletion-worker[tracing]")
        return

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)


def use(provider: trace.TracerProvider | None) -> None:
    """Trace through `provider` (tests: one with an in-memory exporter); None turns tracing off."""
    global _tracer  # noqa: PLW0603 - tracing is process-wide, like logging
    _tracer = None if provider is None else provider.get_tracer("deletion-worker")


def _extract(headers: Mapping[str, Any]) -> context.Context:
    carrier = {key: value for key, value in headers.items() if key in _PROPAGATOR.fields and isinstance(value, str)}
    return _PROPAGATOR.extract(carrier)


def _links(carriers: Iterable[Mapping[str, Any]]) -> list[trace.Link]:
    """A link to each valid context among these headers."""
    contexts = (trace.get_current_span(_extract(headers)).get_span_context() for headers in carriers)
    return [trace.Link(span_context) for span_context in contexts if span_context.is_valid]


def traced_headers(messages: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The headers of each (routing key, headers), plus the context of a PRODUCER span
    made for it. Only called when `enabled()`."""
    assert _tracer is not None
    traced: list[dict[str, Any]] = []
    for routing_key, own in messages:
        with _tracer.start_as_current_span(f"publish {routing_key}", kind=trace.SpanKind.PRODUCER):
            carrier: dict[str, Any] = dict(own)
            _PROPAGATOR.inject(carrier)
            traced.append(carrier)
    return traced


@contextlib.contextmanager
def batch_span(queue: str, messages: Sequence[Carrier]) -> Iterator[None]:
    """One span for a batch, linking every message it carries."""
    if _tracer is None:
        yield
        return
    links = _links(m.headers for m in messages)
    attributes: dict[str, str | int] = {
        "messaging.destination.name": queue,
        "messaging.batch.message_count": len(messages),
    }
    with _tracer.start_as_current_span(
        f"process {queue}", kind=trace.SpanKind.CONSUMER, links=links, attributes=attributes
    ):
        yield


@contextlib.contextmanager
def message_span(queue: str, message: Carrier) -> Iterator[None]:
    """A span for one message, the child of the context it arrived with."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(
        f"process {queue}",
        context=_extract(message.headers),
        kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.destination.name": queue},
    ):
        yield


def traceparent_of(headers: Mapping[str, Any]) -> str | None:
    """The W3C `traceparent` a message arrived with, to be kept with what it created (a
    job); None when tracing is off or it has none."""
    if _tracer is None:
        return None
    value = headers.get("traceparent")
    return value if isinstance(value, str) and value else None


def current_traceparent() -> str | None:
    """The current span's context as a `traceparent` value; None when tracing is off or no
    span is current."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def linked_span(name: str, traceparents: Sequence[str]) -> Iterator[None]:
    """A span linking the traces of what it works on, read back from where they were kept
    (dispatch: the jobs of a round, each with the `traceparent` of the request or API call
    that created it). What is published inside it is its child."""
    if _tracer is None:
        yield
        return
    links = [
        trace.Link(span_context)
        for span_context in (
            trace.get_current_span(_extract({"traceparent": tp})).get_span_context() for tp in traceparents
        )
        if span_context.is_valid
    ]
    with _tracer.start_as_current_span(name, kind=trace.SpanKind.INTERNAL, links=links):
        yield


@contextlib.contextmanager
def server_span(method: str, headers: Mapping[str, Any]) -> Iterator[Callable[[str], None]]:
    """A SERVER span for one HTTP request, the child of the `traceparent` it came with, if
    any; a job it creates keeps this span's context (`current_traceparent`). Yields a
    function that names the span by its route template once routing found it: never by
    the path itself, which may hold an identity (`DELETE …/users/{userId}`)."""
    if _tracer is None:
        yield _unnamed
        return
    with _tracer.start_as_current_span(
        f"HTTP {method}",
        context=_extract(headers),
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method},
    ) as span:

        def name(route: str) -> None:
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)

        yield name


def _unnamed(_route: str) -> None:
    return None


def add_trace_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace and span id on every log line."""
    if _tracer is not None:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            event["trace_id"] = format(span_context.trace_id, "032x")
            event["span_id"] = format(span_context.span_id, "016x")
    return event
