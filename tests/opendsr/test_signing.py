"""OpenDSR signatures: what the processor signs, a receiver verifies; anything changed fails."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import orjson
import pytest

from schemas.status import JobStatus
from tests.opendsr.certs import DOMAIN, make_certificate
from worker.opendsr.protocol import callback_body, callback_status
from worker.opendsr.signing import (
    DOMAIN_HEADER,
    LEGACY_DOMAIN_HEADER,
    LEGACY_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    OpenDsrSignatureError,
    ProcessorSigner,
    SignerConfigError,
    verify_signature,
)
from worker.settings import Settings
from worker.store.opendsr import CALLBACK_EVENT_TYPES

BODY = b'{"controller_id":"acme","request_status":"completed"}'


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_signed_body_verifies_and_a_changed_byte_does_not(tmp_path: Path, kind: str) -> None:
    made = make_certificate(tmp_path, kind=kind)
    signer = ProcessorSigner.load(made.certificate_file, made.private_key_file)
    assert signer.domain == DOMAIN  # from the certificate
    headers = signer.headers(BODY)
    assert headers[DOMAIN_HEADER] == DOMAIN
    verify_signature(headers, BODY, made.pem, domain=DOMAIN)
    for index in (0, len(BODY) // 2, len(BODY) - 1):
        changed = bytearray(BODY)
        changed[index] ^= 0x01
        with pytest.raises(OpenDsrSignatureError, match="does not match"):
            verify_signature(headers, bytes(changed), made.pem)
    signature = bytearray(base64.b64decode(headers[SIGNATURE_HEADER]))
    signature[5] ^= 0x01
    with pytest.raises(OpenDsrSignatureError):
        verify_signature({SIGNATURE_HEADER: base64.b64encode(bytes(signature)).decode()}, BODY, made.pem)


def test_the_signature_of_another_certificate_or_for_another_domain_fails(tmp_path: Path) -> None:
    ours = make_certificate(tmp_path)
    theirs = make_certificate(tmp_path, "evil.example", name="other")
    headers = ProcessorSigner.load(theirs.certificate_file, theirs.private_key_file).headers(BODY)
    with pytest.raises(OpenDsrSignatureError, match="does not match"):
        verify_signature(headers, BODY, ours.pem)
    # Signed by a certificate of theirs, fetched from them: not the processor on the allow-list.
    with pytest.raises(OpenDsrSignatureError, match="expected processor"):
        verify_signature(headers, BODY, theirs.pem, domain=DOMAIN)


def test_headers_carry_both_names_and_either_verifies(tmp_path: Path) -> None:
    made = make_certificate(tmp_path)
    headers = ProcessorSigner.load(made.certificate_file, made.private_key_file).headers(BODY)
    assert headers[LEGACY_SIGNATURE_HEADER] == headers[SIGNATURE_HEADER]
    legacy = {LEGACY_DOMAIN_HEADER: DOMAIN, LEGACY_SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}
    verify_signature(legacy, BODY, made.pem, domain=DOMAIN)
    # Header names are case-insensitive, and a signature wrapped over lines (as in the spec) still reads.
    value = headers[SIGNATURE_HEADER]
    wrapped = "\n".join(value[i : i + 64] for i in range(0, len(value), 64))
    verify_signature({"x-opendsr-signature": wrapped}, BODY, made.pem)


def test_missing_or_malformed_signatures_fail(tmp_path: Path) -> None:
    made = make_certificate(tmp_path)
    with pytest.raises(OpenDsrSignatureError, match="no usable"):
        verify_signature({}, BODY, made.pem)
    with pytest.raises(OpenDsrSignatureError, match="not base64"):
        verify_signature({SIGNATURE_HEADER: "***"}, BODY, made.pem)
    with pytest.raises(OpenDsrSignatureError, match="PEM"):
        verify_signature({SIGNATURE_HEADER: "AAAA"}, BODY, b"not a certificate")


def test_an_expired_certificate_fails(tmp_path: Path) -> None:
    made = make_certificate(tmp_path, valid_from=datetime.now(UTC) - timedelta(days=60))
    headers = ProcessorSigner.load(made.certificate_file, made.private_key_file).headers(BODY)
    with pytest.raises(OpenDsrSignatureError, match="not valid at this time"):
        verify_signature(headers, BODY, made.pem)


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    one = make_certificate(tmp_path, name="one")
    two = make_certificate(tmp_path, name="two")
    with pytest.raises(SignerConfigError, match="not the certificate's"):
        ProcessorSigner.load(one.certificate_file, two.private_key_file)
    with pytest.raises(SignerConfigError):
        ProcessorSigner.load(tmp_path / "missing.pem", two.private_key_file)


def test_settings_name_both_files_or_neither(tmp_path: Path) -> None:
    made = make_certificate(tmp_path)
    assert ProcessorSigner.from_settings(Settings()) is None
    with pytest.raises(SignerConfigError, match="both"):
        ProcessorSigner.from_settings(Settings(opendsr_certificate_file=made.certificate_file))
    signer = ProcessorSigner.from_settings(
        Settings(
            opendsr_certificate_file=made.certificate_file,
            opendsr_private_key_file=made.private_key_file,
            opendsr_processor_domain="dsr.example.com",
        )
    )
    assert signer is not None
    assert signer.domain == "dsr.example.com"


class Request:
    controller_id = "acme"
    subject_request_id = uuid4()
    expected_completion_time = datetime(2026, 12, 1, 12, 0, 0, 500_000, tzinfo=UTC)


def event(event_type: str) -> dict[str, object]:
    return {"eventId": "e1", "type": event_type, "jobId": 7, "status": event_type.rsplit(".", 1)[-1]}


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("job.scheduled", "pending"),
        ("job.running", "in_progress"),
        ("job.completed", "completed"),
        ("job.cancelled", "cancelled"),
        ("job.failed", "cancelled"),
        ("job.at_risk", None),
        ("job.overdue", None),
        ("product.crm.failed", None),
        ("product.sessions.success", None),
    ],
)
def test_which_events_call_back_and_with_which_status(event_type: str, status: str | None) -> None:
    assert callback_status(event(event_type)) == status


def test_a_callback_body_is_the_specs_and_verifies(tmp_path: Path) -> None:
    made = make_certificate(tmp_path)
    signer = ProcessorSigner.load(made.certificate_file, made.private_key_file)
    url = "https://controller.example/opendsr/callbacks"
    body = callback_body(event("job.completed"), Request(), url)
    assert orjson.loads(body) == {
        "controller_id": "acme",
        "expected_completion_time": "2026-12-01T12:00:00Z",
        "status_callback_url": url,
        "subject_request_id": str(Request.subject_request_id),
        "request_status": "completed",
    }
    verify_signature(signer.headers(body), body, made.pem, domain=DOMAIN)
    with pytest.raises(ValueError, match="changes no OpenDSR request status"):
        callback_body(event("product.crm.failed"), Request(), url)


def test_the_fan_out_takes_exactly_the_events_that_call_back() -> None:
    types = [f"job.{status}" for status in JobStatus] + ["job.at_risk", "job.overdue", "product.crm.success"]
    assert sorted(CALLBACK_EVENT_TYPES) == sorted(t for t in types if callback_status(event(t)) is not None)
