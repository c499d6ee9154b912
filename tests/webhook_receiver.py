"""A real HTTP receiver of webhook deliveries in tests: checks each delivery with
`verify_webhook`, as a requester would, and records what it got."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.http_product import QuietServer
from worker.producer import WebhookSignatureError, verify_webhook


@dataclass
class Receiver:
    """Answers with `status` (or the next of `statuses`, the last repeating), after
    `delay` seconds, or never before `hang_until` (time.monotonic()). Deliveries whose
    signature fails verification answer 401 and are counted in `rejected`."""

    secrets: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    hang_until: float = 0.0
    calls: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # verified, in arrival order
    arrived_at: list[float] = field(default_factory=list)
    raw: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    rejected: int = 0
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        self.calls += 1
        self.raw.append((body, headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        if time.monotonic() < self.hang_until:
            await asyncio.sleep(self.hang_until - time.monotonic())
        try:
            event = verify_webhook(headers, body, self.secrets)
        except WebhookSignatureError:
            self.rejected += 1
            return Response(status_code=401)
        status = self.statuses[min(self.calls - 1, len(self.statuses) - 1)]
        if 200 <= status < 300:
            self.events.append(event)
            self.arrived_at.append(time.monotonic())
        return Response(status_code=status)

    def of_job(self, job_id: int) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("jobId") == job_id]

    def types_of_job(self, job_id: int) -> list[str]:
        """Types of the job's events, one per distinct event id (deliveries are at least once)."""
        unique = {event["eventId"]: event["type"] for event in self.of_job(job_id)}
        return sorted(unique.values())

    async def wait_for(self, count: int, job_id: int | None = None, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events if job_id is None else self.of_job(job_id)
            if len({event["eventId"] for event in found}) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} webhook deliveries arrived")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serve_receiver(receiver: Receiver, path: str = "/hook") -> AsyncIterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = Starlette(routes=[Route(path, receiver.handle, methods=["POST"])])
    server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    receiver.url = f"http://127.0.0.1:{port}{path}"
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


def unused_port() -> int:
    """A port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
