"""Signing secrets at rest: sealed with AES-256-GCM under a key derived from
DELETION_WEBHOOK_SECRET_KEY (HKDF-SHA256), so that a copy of the database (a backup, a
replica, a support dump) does not hand out the secrets that sign deliveries. Signing
needs them in plaintext, so they cannot be hashed like API keys.

Sealed form: version byte 1, a 12-byte random nonce, then the ciphertext with its tag.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from worker.errors import ConfigError
from worker.settings import Settings

VERSION = b"\x01"
NONCE_BYTES = 12
# Binds a ciphertext to its use: a sealed value copied into another column does not open as a secret.
ASSOCIATED_DATA = b"deletion-worker webhook secret"


class SecretKeyError(ConfigError):
    """A sealed secret does not open: DELETION_WEBHOOK_SECRET_KEY changed since it was made."""


class SecretBox:
    def __init__(self, key_material: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"deletion-worker webhook secrets v1").derive(
            key_material.encode()
        )
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.webhook_secret_key.get_secret_value())

    def seal(self, secret: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, secret.encode(), ASSOCIATED_DATA)

    def open(self, sealed: bytes) -> str:
        if sealed[:1] != VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SecretKeyError("a webhook secret is not in a known sealed form")
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, ASSOCIATED_DATA).decode()
        except InvalidTag:
            raise SecretKeyError(
                "a webhook secret does not open with DELETION_WEBHOOK_SECRET_KEY (the key changed since it was"
                " made): rotate the secret"
            ) from None
