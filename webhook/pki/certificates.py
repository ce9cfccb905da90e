"""What the webhook's TLS certificates are: a private CA, a serving certificate it signs,
and the checks that tell whether a stored one is still right. Pure: no files, no cluster.

Conventions (see docs/operations.md, "Certificates"):

- keys are ECDSA P-256 (fast, accepted by kube-apiserver and every TLS client here);
- the CA lives 10 years, the serving certificate 1 year (replaced early, see
  :mod:`webhook.pki.renewal`);
- names are SANs only (kube-apiserver ignores the Common Name since 1.19).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALID_DAYS = 3650
SERVING_VALID_DAYS = 365
#: certificates are back-dated by this much so a peer whose clock is a little behind
#: does not see a certificate "not yet valid".
CLOCK_SKEW = dt.timedelta(minutes=5)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"expected an EC private key, got {type(key).__name__}")
        return key

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def not_before(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    def key_matches(self) -> bool:
        """True if the private key belongs to the certificate."""
        try:
            pub = self.key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        except ValueError:
            return False
        return pub == self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """ECDSA keys only sign (``digital_signature``); a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def generate_ca(
    common_name: str, *, valid_days: int = CA_VALID_DAYS, now: dt.datetime | None = None
) -> KeyPair:
    """A self-signed CA that may sign end-entity certificates only (pathlen 0)."""
    if valid_days <= 0:
        raise ValueError("valid_days must be positive")
    now = now or _utcnow()
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_serving_cert(
    ca: KeyPair,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    valid_days: int = SERVING_VALID_DAYS,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A TLS server certificate signed by ``ca``, names as SANs only.

    The validity never outlasts the CA (a chain is only as valid as its CA).
    """
    if isinstance(dns_names, str) or isinstance(ip_addresses, str):
        raise TypeError("dns_names and ip_addresses are sequences of strings, not a string")
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    if valid_days <= 0:
        raise ValueError("valid_days must be positive")
    now = now or _utcnow()
    ca_cert = ca.cert
    ca_key = ca.key
    key = _new_key()
    not_after = min(now + dt.timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    subject_cn = dns_names[0] if dns_names else ip_addresses[0]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a Service is reached by; kube-apiserver checks ``<svc>.<ns>.svc``."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def needs_renewal(cert: x509.Certificate, now: dt.datetime, renew_before: dt.timedelta) -> bool:
    """True once ``now`` is within ``renew_before`` of the certificate's end (or past it),
    or before its start (a certificate from the future is as useless as an expired one)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if now < cert.not_valid_before_utc:
        return True
    return now >= cert.not_valid_after_utc - renew_before


def load_pem_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (empty input -> empty list)."""
    if not pem.strip():
        return []
    return x509.load_pem_x509_certificates(pem)


def ca_bundle_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """A PEM trust bundle, duplicates removed, order kept."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    for c in certs:
        der = c.public_bytes(serialization.Encoding.DER)
        if der in seen:
            continue
        seen.add(der)
        out.append(c.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


def serving_cert_matches(
    serving: KeyPair,
    ca: KeyPair,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
) -> bool:
    """True if ``serving`` was issued by ``ca``, has exactly the wanted SANs and its key."""
    cert = serving.cert
    ca_cert = ca.cert
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ip = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    want_ip = {str(ipaddress.ip_address(a)) for a in ip_addresses}
    return have_dns == set(dns_names) and have_ip == want_ip and serving.key_matches()


def subject_alt_names(cert: x509.Certificate) -> frozenset[str]:
    """The DNS names and IP addresses a certificate is valid for (its SANs)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    names = set(san.get_values_for_type(x509.DNSName))
    names.update(str(a) for a in san.get_values_for_type(x509.IPAddress))
    return frozenset(names)


def serving_cert_problems(
    cert: x509.Certificate, now: dt.datetime, *, must_name: Iterable[str] = ()
) -> list[str]:
    """Why ``cert`` must not be served at ``now``: expired, not yet valid, or not
    valid for every name in ``must_name`` (the names the pair it would replace
    serves: clients that verify one of them would all fail). Empty when it may."""
    problems = []
    if now >= cert.not_valid_after_utc:
        problems.append(f"expired at {cert.not_valid_after_utc.isoformat()}")
    if now < cert.not_valid_before_utc:
        problems.append(f"not valid before {cert.not_valid_before_utc.isoformat()}")
    missing = sorted(set(must_name) - subject_alt_names(cert))
    if missing:
        problems.append(f"not valid for {', '.join(missing)} (the names served until now)")
    return problems
