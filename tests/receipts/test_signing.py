"""Receipts are signed over canonical JSON: any changed byte of the file, another key,
or another algorithm fails verification; identity membership is checked by hash."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from worker.errors import ConfigError
from worker.receipts.identities import INLINE_HASHES, HashListError, covers, identities_section
from worker.receipts.signing import (
    ReceiptInvalidError,
    ReceiptSigner,
    canonical_json,
    generate_private_key,
    load_public_key,
    public_key_text,
    verify_receipt,
)


def payload(signer: ReceiptSigner, hashes: list[bytes]) -> dict[str, Any]:
    return {
        "type": "deletion-receipt",
        "version": 1,
        "algorithm": "Ed25519",
        "keyId": signer.key_id,
        "jobId": 7,
        "status": "completed",
        "finishedAt": "2026-01-02T03:04:05.000006Z",
        "products": [{"product": "crm", "status": "success"}],
        "identities": identities_section(hashes),
        "note": "Zoë",  # non-ASCII travels as UTF-8, unescaped
    }


def test_canonical_json_sorts_keys_without_whitespace() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, "é"], "c": None}}) == '{"a":{"c":null,"d":[1,"é"]},"b":1}'.encode()


def test_every_changed_byte_fails_verification() -> None:
    signer = ReceiptSigner(generate_private_key())
    key = load_public_key(public_key_text(signer.public_key))
    document = signer.sign(payload(signer, [hashlib.sha256(b"x").digest()]))
    assert verify_receipt(document, key)["jobId"] == 7
    for position in range(len(document)):
        changed = bytearray(document)
        changed[position] ^= 0x01
        with pytest.raises(ReceiptInvalidError):
            verify_receipt(bytes(changed), key)


def test_another_key_or_a_rewritten_payload_fails() -> None:
    signer, other = ReceiptSigner(generate_private_key()), ReceiptSigner(generate_private_key())
    document = signer.sign(payload(signer, []))
    with pytest.raises(ReceiptInvalidError, match="signed by key"):
        verify_receipt(document, other.public_key)
    # Re-signed by another key but claiming the first key's id: the signature fails.
    forged = orjson.loads(other.sign(payload(signer, [])))
    with pytest.raises(ReceiptInvalidError, match="signature does not match"):
        verify_receipt(canonical_json(forged), signer.public_key)
    envelope = orjson.loads(document)
    envelope["extra"] = 1
    with pytest.raises(ReceiptInvalidError, match="exactly"):
        verify_receipt(canonical_json(envelope), signer.public_key)


def test_a_malformed_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        ReceiptSigner("c2hvcnQ=")
    with pytest.raises(ConfigError, match="base64"):
        load_public_key("not base64!")


def test_membership_inline_and_through_a_hash_list() -> None:
    small = [hashlib.sha256(str(i).encode()).digest() for i in range(3)]
    assert covers({"identities": identities_section(small)}, small[1])
    assert not covers({"identities": identities_section(small)}, hashlib.sha256(b"other").digest())

    large = [hashlib.sha256(str(i).encode()).digest() for i in range(INLINE_HASHES + 1)]
    section = identities_section(large)
    assert "hashes" not in section
    assert covers({"identities": section}, large[500], list(reversed(large)))
    with pytest.raises(HashListError, match="give the job's identity hash list"):
        covers({"identities": section}, large[500])
    with pytest.raises(HashListError, match="does not match"):
        covers({"identities": section}, large[500], [*large[:-1], hashlib.sha256(b"swapped").digest()])
