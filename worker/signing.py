"""Signed HTTP calls: how deletion-worker signs what it sends a product (and, later, a
webhook receiver), and the one call a receiver makes to check it.

    X-Deletion-Timestamp: <unix seconds>
    X-Deletion-Key-Id:    <key id>             (which secret; two may be live in a rotation)
    X-Deletion-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is inside the signature, so a captured call cannot be replayed later than
the receiver's tolerance (5 minutes by default), nor its body changed.

A receiver, in a few lines:

    from worker.signing import SignatureError, verify
    try:
        verify(request.headers, await request.body(), {"1": b"the secret"})
    except SignatureError:
        return Response(status_code=401)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Deletion-Signature"
TIMESTAMP_HEADER = "X-Deletion-Timestamp"
KEY_ID_HEADER = "X-Deletion-Key-Id"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The call is not signed by a known secret, or is stale (a replay)."""


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def signed_headers(key_id: str, secret: bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {
        TIMESTAMP_HEADER: str(timestamp),
        KEY_ID_HEADER: key_id,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, bytes],
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a signed call against the live secrets ({key id: secret}); returns the key
    id that signed it, or raises SignatureError (unknown key, bad signature, stale)."""
    timestamp_text = _header(headers, TIMESTAMP_HEADER) or ""
    key_id = _header(headers, KEY_ID_HEADER) or ""
    presented = _header(headers, SIGNATURE_HEADER) or ""
    if not timestamp_text.isdigit():
        raise SignatureError("missing or malformed timestamp")
    timestamp = int(timestamp_text)
    current = now if now is not None else time.time()
    if abs(current - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance: stale, or a replay")
    secret = secrets.get(key_id)
    if secret is None:
        raise SignatureError("unknown key id")
    if not hmac.compare_digest(signature(secret, timestamp, body), presented):
        raise SignatureError("signature does not match")
    return key_id
