"""What every console page shares: templates, the signed-in user, CSRF-checked forms and
the response headers (a Content-Security-Policy that allows no inline script or style)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from worker.api.state import ApiState
from worker.console.session import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Signer, browser_secret, set_cookie
from worker.errors import NotFoundError
from worker.store.api_keys import live_key
from worker.store.overview import Overview

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
SESSION_CHECK_SECONDS = 5.0

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is escaped; nothing is marked safe
    undefined=jinja2.StrictUndefined,
)


class SignInRequiredError(Exception):
    """No live session: the page answers with a redirect to the sign-in page."""


class FormRefusedError(Exception):
    """A form without a valid CSRF token: 403."""


class PageNotFoundError(NotFoundError):
    pass


@dataclass(frozen=True)
class ConsoleUser:
    key_id: int
    org_id: str
    prefix: str
    operator: bool


@dataclass
class ConsoleState:
    signer: Signer
    session_seconds: float
    # key id → (checked until, user): a revoked key's sessions end within SESSION_CHECK_SECONDS.
    users: dict[int, tuple[float, ConsoleUser | None]] = field(default_factory=dict)
    # org → (fresh until, when computed, the overview): see routes_overview.OVERVIEW_SECONDS.
    overviews: dict[str, tuple[float, datetime, Overview]] = field(default_factory=dict)


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def pool_of(request: Request) -> asyncpg.Pool:
    return api_state(request).pool


async def current_user(request: Request) -> ConsoleUser | None:
    state = console_state(request)
    claim = state.signer.read_session(request.cookies.get(SESSION_COOKIE))
    if claim is None:
        return None
    cached = state.users.get(claim.key_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with pool_of(request).acquire() as connection:
        owner = await live_key(connection, claim.key_id)
    user = None if owner is None else ConsoleUser(owner.key_id, owner.org_id, owner.prefix, owner.operator)
    if len(state.users) > 10_000:
        state.users.clear()
    state.users[claim.key_id] = (time.monotonic() + SESSION_CHECK_SECONDS, user)
    return user


async def signed_in(request: Request) -> ConsoleUser:
    user = await current_user(request)
    if user is None:
        raise SignInRequiredError
    return user


async def operator(request: Request) -> ConsoleUser:
    user = await signed_in(request)
    if not user.operator:
        raise PageNotFoundError("this page is for operator keys")
    return user


User = Annotated[ConsoleUser, Depends(signed_in)]
Operator = Annotated[ConsoleUser, Depends(operator)]


# A form's text fields are held in memory as they arrive, before anyone is signed in (the
# sign-in form) and before the CSRF check: each is at most this long (the longest, a work
# order's description, is 10,000 characters). The CSV file is spooled to disk instead.
FORM_FIELD_MAX_BYTES = 64 * 1024


async def checked_form(request: Request) -> AsyncIterator[FormData]:
    """The posted form, once its CSRF token matches this browser's secret; its uploaded
    files are closed after the request."""
    form = await request.form(max_files=1, max_fields=50, max_part_size=FORM_FIELD_MAX_BYTES)
    try:
        token = form.get(CSRF_FIELD)
        secret = request.cookies.get(CSRF_COOKIE)
        if not console_state(request).signer.csrf_valid(secret, token if isinstance(token, str) else None):
            raise FormRefusedError
        yield form
    finally:
        await form.close()


Form = Annotated[FormData, Depends(checked_form)]


def field_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def render(
    request: Request, template: str, context: dict[str, Any], status: int = 200, user: ConsoleUser | None = None
) -> Response:
    secret, new = browser_secret(request)
    page = templates.get_template(template).render(
        {**context, "user": user, "csrf": console_state(request).signer.csrf_token(secret), "path": request.url.path}
    )
    response = HTMLResponse(page, status_code=status)
    if new:
        set_cookie(request, response, CSRF_COOKIE, secret)
    return response


def format_time(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.filters["when"] = format_time
