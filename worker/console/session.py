"""Console sessions and CSRF tokens, both signed with one HMAC key.

Signing in exchanges an organization API key for a session cookie that names the key
(by id) and when the session ends; the key itself is never stored in the browser. Each
request re-checks that the key is still live (cached for a few seconds), so revoking a
key ends its sessions. Signing out clears the cookie.

CSRF: every visitor gets a random `dw_console_csrf` cookie; a form carries the HMAC of
it, which a page of another site can neither read nor compute. Both cookies are
HttpOnly and SameSite=Strict, and Secure when the console is served over https.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

SESSION_COOKIE = "dw_console_session"
CSRF_COOKIE = "dw_console_csrf"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class SessionClaim:
    key_id: int
    expires: int


class Signer:
    def __init__(self, key: bytes) -> None:
        # No configured key: a random one, so that no one can forge sessions of this process.
        self._key = key or secrets.token_bytes(32)

    def _mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\x00{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def session_token(self, key_id: int, lifetime_seconds: float) -> str:
        text = f"{key_id}.{int(time.time() + lifetime_seconds)}.{secrets.token_urlsafe(12)}"
        return f"{text}.{self._mac('session', text)}"

    def read_session(self, token: str | None) -> SessionClaim | None:
        if not token:
            return None
        text, _, mac = token.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session", text)):
            return None
        key_id, expires, _nonce = text.split(".", 2)
        if int(expires) < time.time():
            return None
        return SessionClaim(int(key_id), int(expires))

    def csrf_token(self, browser_secret: str) -> str:
        return self._mac("csrf", browser_secret)

    def csrf_valid(self, browser_secret: str | None, token: str | None) -> bool:
        if not browser_secret or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(browser_secret))


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/console", httponly=True, samesite="strict", secure=is_https(request)
    )


def browser_secret(request: Request) -> tuple[str, bool]:
    """This browser's CSRF secret, and whether it is new (the response must set it)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 16:
        return existing, False
    return secrets.token_urlsafe(24), True
