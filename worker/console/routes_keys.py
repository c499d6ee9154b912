"""The organization's API keys (a new key is shown once; revoking ends its sessions) and
its projects' webhook subscriptions (listed here; managed with the CLI or the API)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from worker.console.web import Form, PageNotFoundError, User, pool_of, render
from worker.store.api_keys import create_key, org_keys, revoke_org_key
from worker.store.console import org_projects
from worker.store.webhooks import list_subscriptions

router = APIRouter(prefix="/console", include_in_schema=False)


async def _page(request: Request, user: User, new_key: str | None) -> Response:
    async with pool_of(request).acquire() as connection:
        keys = await org_keys(connection, user.org_id)
    return render(request, "keys.html", {"keys": keys, "new_key": new_key, "title": "API keys"}, user=user)


@router.get("/keys")
async def keys_page(request: Request, user: User) -> Response:
    return await _page(request, user, None)


@router.post("/keys")
async def create(request: Request, user: User, form: Form) -> Response:
    del form  # checked for its CSRF token
    async with pool_of(request).acquire() as connection:
        key = await create_key(connection, user.org_id)  # never an operator key: those come from the CLI
    return await _page(request, user, key)


@router.post("/keys/{key_id}/revoke")
async def revoke(request: Request, user: User, form: Form, key_id: int) -> Response:
    del form
    async with pool_of(request).acquire() as connection:
        if not await revoke_org_key(connection, user.org_id, key_id):
            raise PageNotFoundError("no live key of your organization has that id")
    return RedirectResponse("/console/keys", status_code=303)


@router.get("/webhooks")
async def webhooks_page(request: Request, user: User) -> Response:
    async with pool_of(request).acquire() as connection:
        projects = await org_projects(connection, user.org_id)
        subscriptions = [
            (project, subscription)
            for project in projects
            for subscription in await list_subscriptions(connection, project["id"])
        ]
    return render(request, "webhooks.html", {"subscriptions": subscriptions, "title": "Webhooks"}, user=user)
