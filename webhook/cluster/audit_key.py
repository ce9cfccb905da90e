"""The audit trail's Ed25519 signing key, kept in a Kubernetes Secret.

Created once and never rotated or rewritten by nfsguard: a new key would
orphan the signatures auditors already trust. The Secret is created
``immutable``, so neither nfsguard nor a stray ``kubectl apply`` can change it
(replacing the key is a deliberate delete-and-recreate, see docs/audit.md).
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.audit.signing import key_id, new_keypair

PRIVATE_KEY = "audit.key"
PUBLIC_KEY = "audit.pub"


def _key_id_of(secret: Any) -> str:
    data = secret.data or {}
    if PUBLIC_KEY not in data or PRIVATE_KEY not in data:
        raise ValueError(
            f"secret {secret.metadata.namespace}/{secret.metadata.name} lacks "
            f"{PRIVATE_KEY} and {PUBLIC_KEY}"
        )
    public = load_pem_public_key(base64.b64decode(data[PUBLIC_KEY]))
    return key_id(public)  # type: ignore[arg-type]


def ensure_audit_key_secret(api: Any, namespace: str, name: str) -> tuple[bool, str]:
    """(created, keyId): the existing key's id, or a new key stored in a new Secret."""
    core = client.CoreV1Api(api)
    try:
        return False, _key_id_of(core.read_namespaced_secret(name, namespace))
    except ApiException as exc:
        if exc.status != 404:
            raise
    private_pem, public_pem, kid = new_keypair()
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={"app.kubernetes.io/name": "nfsguard", "app.kubernetes.io/component": "audit"},
            annotations={"nfsguard.io/audit-key-id": kid},
        ),
        type="Opaque",
        immutable=True,
        data={
            PRIVATE_KEY: base64.b64encode(private_pem).decode(),
            PUBLIC_KEY: base64.b64encode(public_pem).decode(),
        },
    )
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status != 409:  # created meanwhile by another run: use that one
            raise
        return False, _key_id_of(core.read_namespaced_secret(name, namespace))
    return True, kid
