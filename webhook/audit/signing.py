"""Ed25519 keys for signed checkpoints.

The private key is a PEM (PKCS#8) file: the same file a Kubernetes Secret
mounts. ``keyId`` is the first 16 hex digits of the SHA-256 of the raw
32-byte public key, so a verifier can tell which key signed a checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from webhook.audit.record import signing_bytes


class AuditKeyError(ValueError):
    """A key file cannot be used (one-line message naming the file)."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.key_id = key_id(private.public_key())

    def sign(self, record: Mapping[str, Any]) -> str:
        return base64.b64encode(self._private.sign(signing_bytes(record))).decode("ascii")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise AuditKeyError(f"{path}: cannot read key: {exc.strerror}") from None


def load_signer(path: str) -> Signer:
    data = _read(path)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise AuditKeyError(f"{path}: not an Ed25519 private key")
    return Signer(private)


def load_public_key(path: str) -> Ed25519PublicKey:
    """A PEM public key, or a private key (its public half is used)."""
    data = _read(path)
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise AuditKeyError(f"{path}: not an Ed25519 key")
            return private.public_key()
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path}: not a PEM Ed25519 key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise AuditKeyError(f"{path}: not an Ed25519 public key")
    return public


def verify_signature(public: Ed25519PublicKey, record: Mapping[str, Any]) -> bool:
    signature = record.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        public.verify(raw, signing_bytes(record))
    except (InvalidSignature, ValueError):
        return False
    return True


def new_keypair() -> tuple[bytes, bytes, str]:
    """A fresh Ed25519 keypair as (private PEM, public PEM, keyId); no I/O."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem, key_id(private.public_key())


def generate(private_path: str, public_path: str, *, force: bool = False) -> str:
    """Write a new keypair (private key mode 0600); returns its keyId."""
    for path in (private_path, public_path):
        if not force and os.path.exists(path):
            raise AuditKeyError(f"{path}: exists (use --force to overwrite)")
    private_pem, public_pem, kid = new_keypair()
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        os.chmod(private_path, 0o600)
        with open(public_path, "wb") as handle:
            handle.write(public_pem)
    except OSError as exc:
        raise AuditKeyError(f"{exc.filename}: cannot write key: {exc.strerror}") from None
    return kid
