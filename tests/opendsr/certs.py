"""Certificates for OpenDSR tests, made on the spot (self-signed: good enough to sign;
the spec wants a CA-issued one in production, which nothing here checks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

DOMAIN = "opendsr.processor.test"


@dataclass(frozen=True)
class ProcessorCertificate:
    certificate_file: Path
    private_key_file: Path

    @property
    def pem(self) -> bytes:
        return self.certificate_file.read_bytes()


def make_certificate(
    directory: Path,
    domain: str = DOMAIN,
    *,
    kind: str = "rsa",
    valid_from: datetime | None = None,
    valid_for: timedelta = timedelta(days=30),
    name: str = "processor",
) -> ProcessorCertificate:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    start = valid_from or datetime.now(UTC) - timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate_file = directory / f"{name}.crt.pem"
    key_file = directory / f"{name}.key.pem"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ProcessorCertificate(certificate_file, key_file)
