"""Request bodies: the size limit is enforced before anything is parsed, and large bodies
are parsed a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.errors import ApiError, error_response


class ByteBudget:
    """Bodies being read, parsed and stored at once share `total` bytes. A 100,000-identity
    work order is ~5-7 MB of JSON and ~70 MB of objects while it is validated and copied
    into Postgres; ten at once took the API to 800 MB. Past the budget a body waits its
    turn, unread (the client's upload waits with it), at most `wait_seconds`, and is then
    refused with 503 and Retry-After."""

    def __init__(self, total: int, wait_seconds: float) -> None:
        self.total = total
        self.wait_seconds = wait_seconds
        self.used = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.total)  # a body larger than the whole budget waits to have it all
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.used + size <= self.total), self.wait_seconds
                )
            except TimeoutError:
                raise ApiError(503, "busy with other large requests; retry in a few seconds", "busy") from None
            self.used += size
        try:
            yield
        finally:
            async with self._changed:
                self.used -= size
                self._changed.notify_all()


def declared_size(headers: Mapping[str, str], max_bytes: int) -> int:
    """What a body will take before it is read: its Content-Length (BodyLimitMiddleware
    has refused one over `max_bytes`), or `max_bytes` when it declares none (chunked)."""
    length = headers.get("content-length", "")
    return min(int(length), max_bytes) if length.isdigit() else max_bytes


class BodyTooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses a body over `max_bytes` with 413: by Content-Length before reading, and by
    counting as it streams (a client may send no length, or lie)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLargeError:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"request body over the limit of {self.max_bytes} bytes", path=scope["path"])
        await response(scope, receive, send)
