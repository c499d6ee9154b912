"""Ed25519 signing of receipts over canonical JSON.

A receipt file is the canonical JSON of `{"receipt": PAYLOAD, "signature": HEX}`, and
the signature is Ed25519 over the canonical JSON of PAYLOAD. Canonical JSON here: UTF-8,
object keys sorted by code point, no whitespace, strings with only the escapes JSON
requires (`"`, `\\`, control characters), integers only (a receipt holds no floats).
Any JSON library that sorts keys and writes compactly produces the same bytes.

Keys travel as base64 of their 32 raw bytes (RFC 8032); a key's id is the first 16 hex
digits of the SHA-256 of its public key, named in each receipt so that a verifier
holding several keys (across a rotation) knows which one signed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from worker.errors import ConfigError

ALGORITHM = "Ed25519"
SIGNATURE_HEX = re.compile(r"[0-9a-f]{128}")


class ReceiptInvalidError(ValueError):
    """The file is not a receipt signed by the given key; the message says why."""


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _raw_key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise ConfigError(f"{what} must be 32 bytes (base64 of an Ed25519 key), not {len(raw)}")
    return raw


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def load_public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw_key(text, "the public key"))


def generate_private_key() -> str:
    """A new private key, as DELETION_RECEIPT_SIGNING_KEY takes it."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return base64.b64encode(seed).decode()


class ReceiptSigner:
    def __init__(self, private_key_text: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_raw_key(private_key_text, "DELETION_RECEIPT_SIGNING_KEY"))
        self.public_key = self._key.public_key()
        self.key_id = key_id(self.public_key)

    def sign(self, payload: dict[str, Any]) -> bytes:
        """The receipt file for this payload (which names ALGORITHM and this key's id)."""
        signature = self._key.sign(canonical_json(payload))
        return canonical_json({"receipt": payload, "signature": signature.hex()})


def verify_receipt(document: bytes, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The payload of a receipt file, once its signature is checked with `public_key`.
    Raises ReceiptInvalidError: any changed byte of the file fails here (the payload's
    bytes are signed; the signature must be lowercase hex, the envelope exactly two keys)."""
    try:
        envelope = orjson.loads(document)
    except orjson.JSONDecodeError:
        raise ReceiptInvalidError("not JSON") from None
    if not isinstance(envelope, dict) or set(envelope) != {"receipt", "signature"}:
        raise ReceiptInvalidError('not a receipt: expected exactly "receipt" and "signature"')
    payload, signature = envelope["receipt"], envelope["signature"]
    if not isinstance(payload, dict) or not isinstance(signature, str) or not SIGNATURE_HEX.fullmatch(signature):
        raise ReceiptInvalidError("not a receipt: malformed payload or signature")
    if payload.get("algorithm") != ALGORITHM:
        raise ReceiptInvalidError(f"signed with {payload.get('algorithm')!r}, not {ALGORITHM}")
    if payload.get("keyId") != key_id(public_key):
        raise ReceiptInvalidError(f"signed by key {payload.get('keyId')!r}, not by key {key_id(public_key)}")
    try:
        public_key.verify(bytes.fromhex(signature), canonical_json(payload))
    except InvalidSignature:
        raise ReceiptInvalidError("the signature does not match the receipt (changed, or another key)") from None
    return payload
