"""The webhook's certificates in a directory: ca.crt, ca.key, ca-bundle.crt, tls.crt,
tls.key, each replaced atomically, keys mode 0600.

``nfsguard certs generate`` stores a :func:`~webhook.pki.renewal.plan` here,
``nfsguard serve`` makes a development certificate here, and
``webhook.server.tls_reload`` picks a new pair up from here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from webhook.pki.certificates import KeyPair
from webhook.pki.renewal import CertBundle, plan


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
