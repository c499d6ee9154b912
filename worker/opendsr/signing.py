"""How OpenDSR responses and status callbacks are signed, and how a receiver checks them.

    X-OpenDSR-Processor-Domain: <the domain the certificate is issued for>
    X-OpenDSR-Signature:        <base64 signature of the raw body bytes>

The signature is made with the processor's private key over the SHA-256 digest of the
exact body bytes (FIPS 186-4: RSA PKCS#1 v1.5 for an RSA key, ECDSA with a DER-encoded
signature for an EC key), and checked with the public key of the certificate the
processor publishes (`processor_certificate` in its discovery document). The same
values are also sent as X-OpenGDPR-Processor-Domain / X-OpenGDPR-Signature, the names
of the spec's previous version, which processors are to keep honouring.

`verify_signature` checks the signature, the certificate's validity period and, given
the domain expected, that the header names it and the certificate covers it. Whether
the certificate chains to a trusted authority and is not revoked is the receiver's
TLS library's job (the spec wants a CA-issued certificate; nothing here checks that).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from worker.errors import ConfigError
from worker.settings import Settings

DOMAIN_HEADER = "X-OpenDSR-Processor-Domain"
SIGNATURE_HEADER = "X-OpenDSR-Signature"
LEGACY_DOMAIN_HEADER = "X-OpenGDPR-Processor-Domain"
LEGACY_SIGNATURE_HEADER = "X-OpenGDPR-Signature"
MIN_RSA_BITS = 2048
MAX_SIGNATURE_CHARS = 4096  # base64 of an RSA-16384 signature, with room for line breaks

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class OpenDsrSignatureError(ValueError):
    """Not signed by this certificate, malformed, for another domain, or the certificate
    is not valid now."""


class SignerConfigError(ConfigError):
    """The certificate or key files are missing, unreadable, or do not belong together."""


def _public_bytes(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_domains(certificate: x509.Certificate) -> list[str]:
    """The DNS names the certificate is issued for (its SAN; its CN when it has none)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found = [str(name) for name in names.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        found = []
    if not found:
        found = [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return found


def _covers(pattern: str, domain: str) -> bool:
    pattern, domain = pattern.lower().rstrip("."), domain.lower().rstrip(".")
    if pattern.startswith("*."):  # one label, as TLS wildcards go
        head, _, rest = domain.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == domain


@dataclass(frozen=True)
class ProcessorSigner:
    certificate_pem: bytes
    private_key: PrivateKey
    domain: str

    @classmethod
    def load(cls, certificate_file: Path, private_key_file: Path, domain: str = "") -> ProcessorSigner:
        try:
            certificate_pem = certificate_file.read_bytes()
            certificate = x509.load_pem_x509_certificate(certificate_pem)
            key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise SignerConfigError(f"OpenDSR certificate or key: {type(error).__name__}: {error}") from None
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise SignerConfigError(f"OpenDSR key: RSA keys of at least {MIN_RSA_BITS} bits")
        elif not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SignerConfigError("OpenDSR key: an RSA or EC private key (FIPS 186-4 signatures)")
        public = certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) or _public_bytes(
            public
        ) != _public_bytes(key.public_key()):
            raise SignerConfigError("OpenDSR key: the private key is not the certificate's")
        domains = certificate_domains(certificate)
        if not domain and not domains:
            raise SignerConfigError("OpenDSR certificate names no domain; set DELETION_OPENDSR_PROCESSOR_DOMAIN")
        return cls(certificate_pem, key, domain or domains[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessorSigner | None:
        """The signer the settings name, or None when they name no certificate and key."""
        certificate_file, key_file = settings.opendsr_certificate_file, settings.opendsr_private_key_file
        if certificate_file is None and key_file is None:
            return None
        if certificate_file is None or key_file is None:
            raise SignerConfigError(
                "set both DELETION_OPENDSR_CERTIFICATE_FILE and DELETION_OPENDSR_PRIVATE_KEY_FILE, or neither"
            )
        return cls.load(certificate_file, key_file, settings.opendsr_processor_domain)

    def sign(self, body: bytes) -> str:
        """Base64 signature of `body` (SHA-256 digest)."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            raw = self.private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        else:
            raw = self.private_key.sign(body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(raw).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        """The headers that sign a response or callback with this body, under both names."""
        value = self.sign(body)
        return {
            DOMAIN_HEADER: self.domain,
            SIGNATURE_HEADER: value,
            LEGACY_DOMAIN_HEADER: self.domain,
            LEGACY_SIGNATURE_HEADER: value,
        }


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    wanted = {name.lower() for name in names}
    for name, value in headers.items():
        if name.lower() in wanted:
            return value
    return None


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    certificate_pem: bytes,
    *,
    domain: str | None = None,
    now: datetime | None = None,
) -> None:
    """Check an OpenDSR callback or response before parsing its body (raw bytes as
    received); OpenDsrSignatureError if it fails. `domain`: the processor expected (the
    receiver's allow-list), which the domain header and the certificate must name."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise OpenDsrSignatureError("the certificate is not a PEM X.509 certificate") from None
    moment = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise OpenDsrSignatureError("the certificate is not valid at this time")
    if domain is not None:
        named = _header(headers, DOMAIN_HEADER, LEGACY_DOMAIN_HEADER)
        if named is None or named.strip().lower() != domain.lower():
            raise OpenDsrSignatureError(f"{DOMAIN_HEADER} does not name the expected processor")
        if not any(_covers(pattern, domain) for pattern in certificate_domains(certificate)):
            raise OpenDsrSignatureError("the certificate is not issued for the expected processor's domain")
    presented = _header(headers, SIGNATURE_HEADER, LEGACY_SIGNATURE_HEADER)
    if presented is None or len(presented) > MAX_SIGNATURE_CHARS:
        raise OpenDsrSignatureError(f"no usable {SIGNATURE_HEADER} header")
    try:
        signature = base64.b64decode("".join(presented.split()), validate=True)
    except (binascii.Error, ValueError):
        raise OpenDsrSignatureError(f"{SIGNATURE_HEADER} is not base64") from None
    public = certificate.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, body, ec.ECDSA(hashes.SHA256()))
        else:
            raise OpenDsrSignatureError("the certificate's key is neither RSA nor EC")
    except InvalidSignature:
        raise OpenDsrSignatureError("the signature does not match the body") from None
