"""What request handlers get from FastAPI: the API's state, the caller, the project, and
the one way a job is created (idempotently)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from typing import Annotated

import orjson
from fastapi import Depends, Request

from worker import tracing
from worker.amqp import Topology
from worker.api.auth import bearer_owner
from worker.api.errors import not_found
from worker.api.state import ApiState
from worker.store.api_keys import ApiKeyOwner
from worker.store.idempotency import create_once
from worker.store.jobs import JobSizing, NewJob
from worker.store.reads import project_id_in_org
from worker.webhooks.urls import check_webhook_url


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(api_state)]
Owner = Annotated[ApiKeyOwner, Depends(bearer_owner)]


async def project_id_of(state: ApiState, project_key: str, owner: ApiKeyOwner) -> int:
    """The caller's project of this key; 404 for a project of another organization, as
    for none at all."""
    cached = state.projects.get((project_key, owner.org_id))
    if cached is not None:
        return cached
    async with state.pool.acquire() as connection:
        project_id = await project_id_in_org(connection, project_key, owner.org_id)
    if project_id is None:
        raise not_found("project")
    state.projects[(project_key, owner.org_id)] = project_id  # projects never move
    return project_id


def fingerprint(*parts: object) -> bytes:
    """SHA-256 of a request's meaningful parts, canonically encoded."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).digest()


def later_parts(*parts: object) -> tuple[object, ...]:
    """Request parts added after keys were first stored: left out of the fingerprint
    while all are unset, so that a request retried across an upgrade matches its key."""
    return parts if any(part not in (None, (), []) for part in parts) else ()


def checked_callback_urls(state: ApiState, urls: list[str] | None) -> tuple[str, ...]:
    """A request's callback URLs, each once, refused (400) where a webhook URL would be."""
    unique = tuple(dict.fromkeys(urls or ()))
    for url in unique:
        check_webhook_url(url, allow_private=state.settings.webhook_allow_private)
    return unique


def api_request_id() -> str:
    return f"api:{uuid.uuid4()}"


async def create_job(state: ApiState, job: NewJob, *, family: str, key: str | None, request_fingerprint: bytes) -> int:
    """Create the job (or, for a key seen before with the same request, find it); returns its id.
    With tracing on, the job keeps this request's trace context (worker.api.traced)."""
    settings = state.settings
    trace_parent = tracing.current_traceparent()
    if trace_parent is not None:
        job = replace(job, trace_parent=trace_parent)
    async with state.pool.acquire() as connection:
        return await create_once(
            connection,
            job,
            family=family,
            key=key,
            fingerprint=request_fingerprint,
            products=state.products.names,
            notify_channel=Topology.for_settings(settings, state.products.names).due_channel,
            sizing=JobSizing(settings.chunk_size, settings.task_max_bytes),
        )
