"""The signature scheme, as a receiver checks it with `verify_webhook`."""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson
import pytest

from worker.producer import WebhookSignatureError, verify_webhook
from worker.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, new_secret, signed_headers

BODY = orjson.dumps({"eventId": "e1", "type": "job.completed", "jobId": 7})


def test_a_delivery_verifies_and_gives_its_event() -> None:
    secret = new_secret()
    headers = signed_headers("e1", "job.completed", [secret], BODY)
    assert verify_webhook(headers, BODY, secret) == {"eventId": "e1", "type": "job.completed", "jobId": 7}
    # Header names are case-insensitive, as HTTP frameworks hand them over.
    assert verify_webhook({k.lower(): v for k, v in headers.items()}, BODY, secret.encode())["jobId"] == 7


def test_the_documented_scheme_computed_by_hand() -> None:
    secret = "whsec_example"
    headers = signed_headers("e1", "job.completed", [secret], BODY, now=1_700_000_000)
    expected = hmac.new(secret.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    assert headers[SIGNATURE_HEADER] == f"v1={expected}"


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers("e1", "job.completed", [new, old], BODY)
    assert len(headers[SIGNATURE_HEADER].split()) == 2
    assert verify_webhook(headers, BODY, old)["eventId"] == "e1"
    assert verify_webhook(headers, BODY, new)["eventId"] == "e1"
    assert verify_webhook(headers, BODY, [new_secret(), old])["eventId"] == "e1"  # a receiver holding two


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace(b"7", b"8")),  # the body changed
        lambda h, b: ({**h, TIMESTAMP_HEADER: str(int(h[TIMESTAMP_HEADER]) + 1)}, b),  # the timestamp changed
        lambda h, b: ({k: v for k, v in h.items() if k != SIGNATURE_HEADER}, b),  # unsigned
        lambda h, b: ({k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, b),  # no timestamp
        lambda h, b: ({**h, SIGNATURE_HEADER: "v0=" + h[SIGNATURE_HEADER][3:]}, b),  # another scheme
        lambda h, b: ({**h, TIMESTAMP_HEADER: "1e9"}, b),  # malformed
    ],
)
def test_tampered_deliveries_fail(tamper: object) -> None:
    secret = new_secret()
    headers, body = tamper(signed_headers("e1", "job.completed", [secret], BODY), BODY)  # type: ignore[operator]
    with pytest.raises(WebhookSignatureError):
        verify_webhook(headers, body, secret)


def test_another_secret_fails() -> None:
    headers = signed_headers("e1", "job.completed", [new_secret()], BODY)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook(headers, BODY, new_secret())


def test_a_replayed_delivery_is_stale() -> None:
    secret = new_secret()
    captured = signed_headers("e1", "job.completed", [secret], BODY, now=time.time() - 301)
    with pytest.raises(WebhookSignatureError, match="stale"):
        verify_webhook(captured, BODY, secret)
    assert verify_webhook(captured, BODY, secret, tolerance=600)["eventId"] == "e1"
    ahead = signed_headers("e1", "job.completed", [secret], BODY, now=time.time() + 301)
    with pytest.raises(WebhookSignatureError, match="stale"):
        verify_webhook(ahead, BODY, secret)


def test_a_signed_body_that_is_not_an_object_fails() -> None:
    secret = new_secret()
    with pytest.raises(WebhookSignatureError):
        verify_webhook(signed_headers("e1", "x", [secret], b"[1]"), b"[1]", secret)
