"""Probes and metrics: /healthz (the process answers), /readyz (Postgres and RabbitMQ
reachable), /metrics (Prometheus text). No authentication: probes and scrapers have none."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.amqp import connect
from worker.api.state import ApiState, json_response
from worker.errors import describe

router = APIRouter(tags=["operations"])
PROBE_TIMEOUT_SECONDS = 3.0
READY_CACHE_SECONDS = 2.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


async def _check_database(state: ApiState) -> str | None:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            async with state.pool.acquire() as connection:
                await connection.fetchval("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        return f"database: {describe(error)}"
    return None


async def _check_broker(state: ApiState) -> str | None:
    try:
        connection = await connect(
            state.settings.broker_urls, timeout=PROBE_TIMEOUT_SECONDS, name="deletion-worker readyz"
        )
        await connection.close()
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        return f"broker: {describe(error)}"
    return None


@router.get("/readyz", summary="Postgres and RabbitMQ are reachable")
async def readyz(request: Request) -> Response:
    """Checked at most once every READY_CACHE_SECONDS: without a key anyone may call it,
    and each check opens a broker connection."""
    state: ApiState = request.app.state.api
    checked_at, problems = state.readiness
    if time.monotonic() - checked_at > READY_CACHE_SECONDS:
        problems = [p for p in await asyncio.gather(_check_database(state), _check_broker(state)) if p]
        state.readiness = (time.monotonic(), problems)
    if problems:
        return json_response({"error": "not_ready", "message": "; ".join(problems)}, status=503)
    return json_response({"status": "ready"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
