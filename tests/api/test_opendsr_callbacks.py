"""OpenDSR status callbacks end to end: a request's status_callback_urls receive its
status changes (pending, in_progress, completed) from the notify role, in the spec's
body, signed with the processor certificate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from tests.api.conftest import Tenant
from tests.api.test_opendsr import PRODUCTS, headers, request_body
from tests.opendsr.certs import DOMAIN, make_certificate
from tests.support import WorkerHandle, wait_for_jobs
from tests.webhook_receiver import Receiver, serve_receiver
from worker.api.app import create_app
from worker.opendsr.signing import OpenDsrSignatureError, verify_signature
from worker.products import load_products
from worker.settings import Settings


class StatusReceiver(Receiver):
    """Checks each callback as a controller would: the certificate's signature first."""

    certificate_pem: bytes = b""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.calls += 1
        try:
            verify_signature(dict(request.headers), body, self.certificate_pem, domain=DOMAIN)
        except OpenDsrSignatureError:
            self.rejected += 1
            return Response(status_code=401)
        self.events.append(orjson.loads(body))
        return Response(status_code=200)


async def test_status_callbacks_arrive_signed_with_the_certificate(
    pool: asyncpg.Pool,
    tenant: Tenant,
    make_settings: Callable[..., Settings],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
    tmp_path: Path,
) -> None:
    certificate = make_certificate(tmp_path)
    settings = make_settings(
        PRODUCTS,
        opendsr_certificate_file=certificate.certificate_file,
        opendsr_private_key_file=certificate.private_key_file,
        webhook_allow_private=True,  # the receiver listens on 127.0.0.1
    )
    receiver = StatusReceiver()
    receiver.certificate_pem = certificate.pem
    async with serve_receiver(receiver, path="/opendsr/callbacks"):
        await run_worker(settings)
        app = create_app(settings, load_products(settings.products_file), pool=pool)
        body = request_body(status_callback_urls=[receiver.url])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.test") as dsr:
            created = await dsr.post("/opendsr/requests", json=body, headers=headers(tenant))
        assert created.status_code == 201, created.text
        job_id = await pool.fetchval(
            "SELECT job_id FROM opendsr_requests WHERE subject_request_id = $1", body["subject_request_id"]
        )
        assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
        deadline = time.monotonic() + 30
        while {c["request_status"] for c in receiver.events} != {"pending", "in_progress", "completed"}:
            assert time.monotonic() < deadline, receiver.events
            await asyncio.sleep(0.05)
    assert receiver.rejected == 0
    assert {c["subject_request_id"] for c in receiver.events} == {body["subject_request_id"]}
    assert {c["status_callback_url"] for c in receiver.events} == {receiver.url}
    assert {c["controller_id"] for c in receiver.events} == {tenant.org}
