"""The API's own Prometheus metrics, labelled by route template (never the raw path: it
carries user ids) and a pure-ASGI middleware that records them."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_REQUESTS = Counter("deletion_api_requests_total", "HTTP requests answered.", ["route", "method", "status"])
API_DURATION = Histogram(
    "deletion_api_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            API_REQUESTS.labels(template, scope["method"], str(status)).inc()
            API_DURATION.labels(template, scope["method"]).observe(time.perf_counter() - started)
