"""A real HTTP endpoint standing in for a downstream product in tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the test process owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class ProductEndpoint:
    """Answers each call with the next status of `statuses` (the last one repeats), or
    with `answer(body)` when set; records every call."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    hang_until: float = 0.0  # time.monotonic() before which a call gets no answer (a blackhole)
    answer: Callable[[dict[str, Any]], Response] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    signatures: list[str | None] = field(default_factory=list)
    # Each call's body and headers, as the receiver saw them (to verify its signature).
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.calls.append(json.loads(body))
        self.signatures.append(request.headers.get("x-deletion-signature"))
        self.received.append((body, dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if time.monotonic() < self.hang_until:
            await asyncio.sleep(self.hang_until - time.monotonic())
        if self.answer is not None:
            return self.answer(self.calls[-1])
        status = self.statuses[min(len(self.calls) - 1, len(self.statuses) - 1)]
        return JSONResponse({"ok": status < 400}, status_code=status)


@contextlib.asynccontextmanager
async def serve_endpoint(endpoint: ProductEndpoint) -> AsyncIterator[ProductEndpoint]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = Starlette(routes=[Route("/delete", endpoint.handle, methods=["POST"])])
    server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    endpoint.url = f"http://127.0.0.1:{port}/delete"
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield endpoint
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
