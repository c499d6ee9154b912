"""The API with the web console mounted under /console (what `deletion-worker api` and
`deletion-worker up` serve)."""

from __future__ import annotations

import time

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.app import create_app
from worker.console import routes_auth, routes_jobs, routes_keys, routes_new, routes_ops, routes_overview
from worker.console.session import Signer
from worker.console.web import (
    HERE,
    SECURITY_HEADERS,
    ConsoleState,
    FormRefusedError,
    PageNotFoundError,
    SignInRequiredError,
    current_user,
    render,
)
from worker.products import ProductsFile
from worker.settings import Settings

PREFIX = "/console"


class ConsoleHeaders:
    """Security headers on every console response (pages, fragments, static files), and
    `Server-Timing: app;dur=MS`: the time the server took until the response began (what
    the bench reports as a page's server-side time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        static = str(scope["path"]).startswith(f"{PREFIX}/static/")
        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                for name, value in SECURITY_HEADERS.items():
                    if static and name == "Cache-Control":
                        continue
                    headers.append((name.lower().encode(), value.encode()))
                took = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={took:.1f}".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


async def _sign_in_required(request: Request, error: Exception) -> Response:
    del error
    return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)


async def _refused(request: Request, error: Exception) -> Response:
    del error
    message = "The form was refused: it is stale or came from another site. Go back, reload and try again."
    return render(request, "error.html", {"message": message, "title": "Refused"}, 403, await current_user(request))


async def _not_found(request: Request, error: Exception) -> Response:
    return render(
        request, "error.html", {"message": str(error), "title": "Not found"}, 404, await current_user(request)
    )


def create_console_app(settings: Settings, products: ProductsFile, pool: asyncpg.Pool | None = None) -> FastAPI:
    app = create_app(settings, products, pool)
    app.state.console = ConsoleState(
        signer=Signer(settings.console_session_key.get_secret_value().encode()),
        session_seconds=settings.console_session_hours * 3600,
    )
    for module in (routes_auth, routes_overview, routes_jobs, routes_new, routes_ops, routes_keys):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignInRequiredError, _sign_in_required)
    app.add_exception_handler(FormRefusedError, _refused)
    app.add_exception_handler(PageNotFoundError, _not_found)
    app.add_middleware(ConsoleHeaders)
    return app
