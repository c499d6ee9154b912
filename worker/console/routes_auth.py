"""Signing in with an organization API key, and out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from worker.console.session import SESSION_COOKIE, set_cookie
from worker.console.web import Form, console_state, current_user, field_text, pool_of, render
from worker.store.api_keys import verify_key

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    if await current_user(request) is not None:
        return RedirectResponse("/console", status_code=303)
    return render(request, "sign_in.html", {"error": None})


@router.post("/sign-in")
async def sign_in(request: Request, form: Form) -> Response:
    async with pool_of(request).acquire() as connection:
        owner = await verify_key(connection, field_text(form, "key"))
    if owner is None:
        return render(request, "sign_in.html", {"error": "That key is not valid (wrong, or revoked)."}, status=401)
    state = console_state(request)
    response = RedirectResponse("/console", status_code=303)
    token = state.signer.session_token(owner.key_id, state.session_seconds)
    set_cookie(request, response, SESSION_COOKIE, token, max_age=int(state.session_seconds))
    return response


@router.post("/sign-out")
async def sign_out(request: Request, form: Form) -> Response:
    del form  # checked for its CSRF token: another site cannot sign anyone out
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="strict")
    return response
