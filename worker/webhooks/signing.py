"""How a webhook delivery is signed, and how a receiver checks it.

    Deletion-Webhook-Id:        <eventId>            (deduplicate by it: delivery is at least once)
    Deletion-Webhook-Event:     <event type>
    Deletion-Webhook-Timestamp: <unix seconds>
    Deletion-Webhook-Signature: v1=<hex> [v1=<hex>]

Each `v1=` value is the hex HMAC-SHA256, keyed with a signing secret (the `whsec_…`
string exactly as shown, as UTF-8 bytes), of `<timestamp>.<body>`: the timestamp's
decimal digits, a full stop, and the raw body bytes. There is one value per active
secret, so a receiver holding either the old or the new secret accepts deliveries
during a rotation. The timestamp is signed too: a captured delivery cannot be replayed
once it is older than the receiver's tolerance, nor its body changed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence

ID_HEADER = "Deletion-Webhook-Id"
EVENT_HEADER = "Deletion-Webhook-Event"
TIMESTAMP_HEADER = "Deletion-Webhook-Timestamp"
SIGNATURE_HEADER = "Deletion-Webhook-Signature"
SCHEME = "v1"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
DEFAULT_TOLERANCE_SECONDS = 300
MAX_SIGNATURES = 8  # more values than any rotation makes: a header stuffed to make us work


class WebhookSignatureError(ValueError):
    """Not signed with a secret the receiver holds, malformed, or stale (a replay)."""


def new_secret() -> str:
    """A signing secret: 32 random bytes, printable, recognisable by its prefix."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(
    event_id: str, event_type: str, signing_secrets: Sequence[str], body: bytes, now: float | None = None
) -> dict[str, str]:
    """The headers of one delivery, signed with every active secret (newest first)."""
    if not signing_secrets:
        raise ValueError("a delivery needs at least one signing secret")
    timestamp = int(now if now is not None else time.time())
    values = " ".join(f"{SCHEME}={signature(secret, timestamp, body)}" for secret in signing_secrets)
    return {
        ID_HEADER: event_id,
        EVENT_HEADER: event_type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: values,
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _presented(header: str) -> list[str]:
    values = []
    for part in header.split()[:MAX_SIGNATURES]:
        scheme, _, digest = part.partition("=")
        if scheme == SCHEME and digest:
            values.append(digest)
    return values


def check_signature(
    headers: Mapping[str, str],
    body: bytes,
    held: Iterable[str | bytes],
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise WebhookSignatureError unless one `v1` value of the signature header is the
    signature of this body and timestamp under one of the `held` secrets, and the
    timestamp is within `tolerance` seconds of now (either side: clocks drift)."""
    timestamp_text = (_header(headers, TIMESTAMP_HEADER) or "").strip()
    if not timestamp_text.isascii() or not timestamp_text.isdigit() or len(timestamp_text) > 12:
        raise WebhookSignatureError(f"missing or malformed {TIMESTAMP_HEADER}")
    timestamp = int(timestamp_text)
    current = now if now is not None else time.time()
    if abs(current - timestamp) > tolerance:
        raise WebhookSignatureError("timestamp outside the tolerance: stale, or a replay")
    presented = _presented(_header(headers, SIGNATURE_HEADER) or "")
    if not presented:
        raise WebhookSignatureError(f"missing or malformed {SIGNATURE_HEADER}")
    keys = [_key(secret) for secret in held]
    if not keys:
        raise WebhookSignatureError("no secret to check the signature with")
    # Every comparison is made (constant time each), whichever matches.
    matched = False
    for key in keys:
        expected = signature(key, timestamp, body)
        for value in presented:
            matched |= hmac.compare_digest(expected, value)
    if not matched:
        raise WebhookSignatureError("signature does not match")
