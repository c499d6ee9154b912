"""Signing secrets at rest are sealed, and open only with the key that sealed them."""

from __future__ import annotations

import pytest

from worker.webhooks.crypto import SecretBox, SecretKeyError
from worker.webhooks.signing import new_secret


def test_seal_and_open() -> None:
    box = SecretBox("k" * 32)
    secret = new_secret()
    sealed = box.seal(secret)
    assert secret.encode() not in sealed
    assert box.seal(secret) != sealed  # a new nonce each time
    assert box.open(sealed) == secret


def test_another_key_or_a_changed_value_does_not_open() -> None:
    sealed = SecretBox("k" * 32).seal(new_secret())
    with pytest.raises(SecretKeyError, match="DELETION_WEBHOOK_SECRET_KEY"):
        SecretBox("j" * 32).open(sealed)
    with pytest.raises(SecretKeyError):
        SecretBox("k" * 32).open(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(SecretKeyError):
        SecretBox("k" * 32).open(b"\x02" + sealed[1:])
