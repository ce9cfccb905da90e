"""Certificates for the webhook's TLS: a private CA and a serving certificate it signs.

Pure functions over ``cryptography``: nothing here talks to a cluster. The lifecycle
(:func:`plan`) is a pure decision too: given what is stored and the clock, it says what
to store next. ``webhook.cluster.certs`` applies it to a Secret and the
MutatingWebhookConfiguration; ``nfsguard certs generate`` applies it to a directory.

Conventions (see docs/operations.md, "Certificates"):

- keys are ECDSA P-256 (fast, accepted by kube-apiserver and every TLS client here);
- the CA lives 10 years and is replaced 1 year before it expires; the serving
  certificate lives 1 year and is replaced 60 days before it expires;
- names are SANs only (kube-apiserver ignores the Common Name since 1.19);
- while a CA is being replaced the trust bundle holds the new CA *and* the old one,
  so a server still presenting a certificate from the old CA stays trusted until
  it has picked up the new one; an old CA leaves the bundle once it has expired.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_RENEW_BEFORE",
    "CA_VALID_DAYS",
    "CLOCK_SKEW",
    "SERVING_RENEW_BEFORE",
    "SERVING_VALID_DAYS",
    "CertBundle",
    "KeyPair",
    "RenewalPolicy",
    "ca_bundle_pem",
    "ensure_dev_tls",
    "generate_ca",
    "issue_serving_cert",
    "load_pem_certificates",
    "needs_renewal",
    "plan",
    "read_tls_dir",
    "service_dns_names",
    "serving_cert_matches",
    "write_atomic",
    "write_tls_dir",
]

CA_VALID_DAYS = 3650
SERVING_VALID_DAYS = 365
CA_RENEW_BEFORE = dt.timedelta(days=365)
SERVING_RENEW_BEFORE = dt.timedelta(days=60)
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
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
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
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
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


# --------------------------------------------------------------------------- lifecycle


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


@dataclass(frozen=True)
class RenewalPolicy:
    ca_valid_days: int = CA_VALID_DAYS
    ca_renew_before: dt.timedelta = CA_RENEW_BEFORE
    serving_valid_days: int = SERVING_VALID_DAYS
    serving_renew_before: dt.timedelta = SERVING_RENEW_BEFORE

    def __post_init__(self) -> None:
        if self.ca_renew_before >= dt.timedelta(days=self.ca_valid_days):
            raise ValueError("ca_renew_before must be shorter than the CA's validity")
        if self.serving_renew_before >= dt.timedelta(days=self.serving_valid_days):
            raise ValueError("serving_renew_before must be shorter than the serving validity")


@dataclass(frozen=True)
class CertBundle:
    """Everything the webhook's TLS needs, as stored (Secret or directory).

    ``ca_bundle`` is what clients trust (the caBundle of the webhook configuration):
    the current CA first, then any previous CA still within its validity.
    """

    ca: KeyPair
    serving: KeyPair
    ca_bundle: bytes
    changes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def plan(
    current: CertBundle | None,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    now: dt.datetime | None = None,
    policy: RenewalPolicy = RenewalPolicy(),
    ca_common_name: str = "nfsguard-webhook-ca",
) -> CertBundle:
    """What to store next. Returns ``current`` (with ``changes == ()``) when
    nothing needs doing, so a caller can write only if ``result.changed``.

    - nothing stored, or the stored CA unusable -> new CA and serving cert;
    - CA within ``ca_renew_before`` of its end -> new CA; the old CA stays in the
      bundle (until it expires) so the switch never leaves a served chain untrusted;
    - serving cert within ``serving_renew_before`` of its end, issued by another CA,
      with other SANs, or not matching its key -> new serving cert from the current CA;
    - expired CAs leave the bundle; the current CA is always in it.
    """
    now = now or _utcnow()
    changes: list[str] = []
    ca: KeyPair
    previous: list[x509.Certificate] = []
    if current is None:
        ca = generate_ca(ca_common_name, valid_days=policy.ca_valid_days, now=now)
        changes.append("created CA")
    else:
        ca = current.ca
        previous = load_pem_certificates(current.ca_bundle)
        if not ca.key_matches() or now >= ca.not_after:
            ca = generate_ca(ca_common_name, valid_days=policy.ca_valid_days, now=now)
            changes.append("replaced unusable or expired CA")
        elif needs_renewal(ca.cert, now, policy.ca_renew_before):
            previous.insert(0, ca.cert)
            ca = generate_ca(ca_common_name, valid_days=policy.ca_valid_days, now=now)
            changes.append(f"rotated CA (old one expires {current.ca.not_after:%Y-%m-%d})")

    serving: KeyPair | None = current.serving if current is not None else None
    if serving is None:
        reason = "issued serving certificate"
    elif not serving_cert_matches(serving, ca, dns_names=dns_names, ip_addresses=ip_addresses):
        reason = "reissued serving certificate (issuer, names or key changed)"
    elif needs_renewal(serving.cert, now, policy.serving_renew_before):
        reason = f"renewed serving certificate (expires {serving.not_after:%Y-%m-%d})"
    else:
        reason = ""
    if reason:
        serving = issue_serving_cert(
            ca,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            valid_days=policy.serving_valid_days,
            now=now,
        )
        changes.append(reason)
    assert serving is not None

    ca_der = ca.cert.public_bytes(serialization.Encoding.DER)
    still_valid = [
        c
        for c in previous
        if c.not_valid_after_utc > now and c.public_bytes(serialization.Encoding.DER) != ca_der
    ]
    bundle = ca_bundle_pem([ca.cert, *still_valid])
    if current is not None and bundle != current.ca_bundle and not changes:
        changes.append("pruned expired CAs from the trust bundle")

    if not changes and current is not None:
        return current if not current.changes else dataclasses.replace(current, changes=())
    return CertBundle(ca=ca, serving=serving, ca_bundle=bundle, changes=tuple(changes))


# --------------------------------------------------------------------------- files


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


DEV_DNS_NAMES = ("localhost",)
DEV_IP_ADDRESSES = ("127.0.0.1",)


def read_tls_dir(tls_dir: Path) -> CertBundle | None:
    """The bundle stored in a directory (ca.crt, ca.key, tls.crt, tls.key and optionally
    ca-bundle.crt), or None if any required file is missing or unreadable."""
    try:
        ca = KeyPair((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
        serving = KeyPair((tls_dir / "tls.crt").read_bytes(), (tls_dir / "tls.key").read_bytes())
        bundle_path = tls_dir / "ca-bundle.crt"
        bundle = bundle_path.read_bytes() if bundle_path.exists() else ca.cert_pem
        ca.cert, serving.cert  # noqa: B018  (parse now: a corrupt file means "none")
    except (OSError, ValueError):
        return None
    return CertBundle(ca=ca, serving=serving, ca_bundle=bundle)


def write_tls_dir(tls_dir: Path, bundle: CertBundle) -> None:
    """Store a bundle in a directory; keys 0600. tls.key is written before tls.crt so
    a watcher keyed on tls.crt sees a consistent pair."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(tls_dir / "ca.key", bundle.ca.key_pem, mode=0o600)
    write_atomic(tls_dir / "ca.crt", bundle.ca.cert_pem)
    write_atomic(tls_dir / "ca-bundle.crt", bundle.ca_bundle)
    write_atomic(tls_dir / "tls.key", bundle.serving.key_pem, mode=0o600)
    write_atomic(tls_dir / "tls.crt", bundle.serving.cert_pem)


def ensure_dev_tls(tls_dir: Path) -> None:
    """Make sure ``tls_dir`` holds a usable development certificate.

    If tls.crt or tls.key is missing, create the directory and write ca.crt, ca.key,
    tls.crt and tls.key (SANs localhost and 127.0.0.1; keys mode 0600). Existing
    files are left alone: an operator's own certificate is never overwritten.
    """
    tls_dir = Path(tls_dir)
    if (tls_dir / "tls.crt").is_file() and (tls_dir / "tls.key").is_file():
        return
    bundle = plan(None, dns_names=DEV_DNS_NAMES, ip_addresses=DEV_IP_ADDRESSES)
    write_tls_dir(tls_dir, bundle)
