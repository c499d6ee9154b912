"""Sends one webhook delivery: resolve, check, connect to the checked address, POST.

The host is resolved and every address checked (worker.webhooks.urls) at each delivery,
and the request is sent to the checked address itself, with the URL's host in the Host
header and, for https, as the TLS server name (which the certificate is verified
against): what was checked is what is connected to, whatever DNS answers a moment later.

Bounded: the whole call, resolving included, has one deadline (`timeout`); the answer's
body is never read (only its status counts); no redirects are followed (a 3xx is
retried like any other non-2xx answer); environment proxies are not used; connections
are not kept alive, so a connection made for one host name is never reused for another
name that resolves to the same address.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import httpx

from worker.errors import TransientError
from worker.webhooks.urls import WebhookUrlError, resolve_destination

USER_AGENT = "deletion-worker-webhooks/1"
OutcomeKind = Literal["delivered", "gone", "retry", "refused"]


@dataclass(frozen=True)
class Outcome:
    """`delivered` (2xx), `gone` (410: stop sending there), `retry` (anything else, a
    time-out, a connection error), `refused` (the URL or its addresses are not allowed)."""

    kind: OutcomeKind
    detail: str
    status: int | None = None


class WebhookSender:
    def __init__(self, *, timeout: float, allow_private: bool, max_connections: int = 100) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
            follow_redirects=False,
            trust_env=False,
        )

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._send(url, body, headers)
        except TimeoutError:
            return Outcome("retry", f"no answer within {self.timeout:g} s")

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            destination = await resolve_destination(url, allow_private=self.allow_private, timeout=self.timeout)
        except WebhookUrlError as refused:
            return Outcome("refused", str(refused))
        except TransientError as error:
            return Outcome("retry", str(error))
        request_headers = {
            **headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Host": destination.host_header,
        }
        extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
        failure = "no address to connect to"
        for address in destination.addresses:  # the next address only when one cannot be reached
            try:
                async with self._client.stream(
                    "POST", destination.url_for(address), content=body, headers=request_headers, extensions=extensions
                ) as response:
                    return self._outcome(response.status_code)
            except httpx.ConnectError as error:
                failure = f"cannot connect ({type(error).__name__})"
            except httpx.TimeoutException:
                return Outcome("retry", f"no answer within {self.timeout:g} s")
            except httpx.HTTPError as error:
                return Outcome("retry", f"failed: {type(error).__name__}")
        return Outcome("retry", failure)

    @staticmethod
    def _outcome(status: int) -> Outcome:
        if 200 <= status < 300:
            return Outcome("delivered", f"answered {status}", status)
        if status == 410:
            return Outcome("gone", "answered 410 Gone", status)
        return Outcome("retry", f"answered {status}", status)

    async def close(self) -> None:
        await self._client.aclose()
