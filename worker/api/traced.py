"""A SERVER span per HTTP request when tracing is on (worker.tracing): the trace a job
created by `POST /workorder`, `DELETE …/users/…` or OpenDSR keeps, and that the dispatch
round sending its tasks links. Off, a request passes straight through."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from worker import tracing


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}
        with tracing.server_span(scope["method"], headers) as name_span:
            try:
                await self.app(scope, receive, send)
            finally:
                route = scope.get("route")
                name_span(getattr(route, "path", "unmatched"))
