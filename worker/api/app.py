"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from worker.api import (
    health,
    routes_audit,
    routes_identities,
    routes_jobs,
    routes_opendsr,
    routes_receipts,
    routes_retry,
    routes_webhooks,
    routes_workorders,
)
from worker.api.auth import KeyCache
from worker.api.errors import install_error_handlers
from worker.api.json_body import document_bodies
from worker.api.limits import BodyLimitMiddleware
from worker.api.metrics import MetricsMiddleware
from worker.api.state import ApiState
from worker.api.traced import TracingMiddleware
from worker.db import create_pool, init_api_connection
from worker.products import ProductsFile
from worker.settings import Settings

DESCRIPTION = """User-data deletion jobs (the Jobs API, `/public` and the older `/api/v1`) and
bulk identity deletion with per-product status (the work-order API, `/workorder`).
Authenticate with `Authorization: Bearer {ORGANIZATION_API_KEY}` (`/api/v1`: the bare key)."""


def create_app(settings: Settings, products: ProductsFile, pool: asyncpg.Pool | None = None) -> FastAPI:
    """The API; it opens (and closes) its own pool unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_pool = pool is None
        active = pool if pool is not None else await create_pool(settings, init=init_api_connection)
        app.state.api = ApiState(settings=settings, products=products, pool=active)
        app.state.pool = active
        try:
            yield
        finally:
            if own_pool:
                await active.close()

    app = FastAPI(title="deletion-worker", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.key_cache = KeyCache()
    if pool is not None:  # usable before (or without) the lifespan running, as in tests
        app.state.api = ApiState(settings=settings, products=products, pool=pool)
        app.state.pool = pool
    install_error_handlers(app)
    app.include_router(routes_jobs.public_jobs)
    app.include_router(routes_jobs.legacy_jobs)
    app.include_router(routes_identities.router)
    app.include_router(routes_retry.router)
    app.include_router(routes_workorders.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_receipts.router)
    app.include_router(routes_opendsr.router)
    document_bodies(app, *routes_workorders.SELF_PARSED_BODIES, *routes_opendsr.SELF_PARSED_BODIES)
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(TracingMiddleware)  # outermost: the span covers the whole request
    return app
