"""Signed product calls: a receiver checks one in a call, and a replay or a changed byte fails."""

from __future__ import annotations

import pytest

from worker.signing import SignatureError, signed_headers, verify

SECRETS = {"2025-11": b"new secret", "2025-05": b"old secret"}


def test_a_signed_call_verifies_with_its_key_id_during_a_rotation() -> None:
    body = b'{"taskId": "t"}'
    headers = signed_headers("2025-05", b"old secret", body, now=1_800_000_000)
    assert verify(headers, body, SECRETS, now=1_800_000_010) == "2025-05"
    lower = {name.lower(): value for name, value in headers.items()}  # header names are case-insensitive
    assert verify(lower, body, SECRETS, now=1_800_000_010) == "2025-05"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, b: (h, b + b" "), "does not match"),
        (lambda h, b: ({**h, "X-Deletion-Key-Id": "unknown"}, b), "unknown key"),
        (lambda h, b: ({**h, "X-Deletion-Timestamp": "1800000001"}, b), "does not match"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "X-Deletion-Timestamp"}, b), "timestamp"),
    ],
)
def test_a_changed_call_fails(change: object, message: str) -> None:
    body = b"{}"
    headers, changed = change(signed_headers("2025-11", b"new secret", body, now=1_800_000_000), body)  # type: ignore[operator]
    with pytest.raises(SignatureError, match=message):
        verify(headers, changed, SECRETS, now=1_800_000_000)


def test_a_replay_outside_the_tolerance_fails() -> None:
    body = b"{}"
    headers = signed_headers("2025-11", b"new secret", body, now=1_800_000_000)
    with pytest.raises(SignatureError, match="stale"):
        verify(headers, body, SECRETS, tolerance=300, now=1_800_000_301)
