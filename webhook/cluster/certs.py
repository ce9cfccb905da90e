"""Keep the webhook's certificates in a Secret and its CA in the webhook configuration.

One idempotent operation, :func:`sync_certificates`: read the Secret, let
:func:`webhook.plan` decide (create, renew, rotate the CA, nothing), write back,
and make every webhook of the MutatingWebhookConfiguration trust the bundle.

Order matters for an uninterrupted switch: the trust bundle (old CA + new CA while a
CA rotates) goes into ``caBundle`` *before* the Secret carries a certificate from the
new CA; the pods pick the Secret up later (kubelet sync, then
``webhook.server.tls_reload``), and whichever certificate they present meanwhile is
trusted. Concurrent runs (two replicas, a CronJob) are safe: the Secret is written
with its resourceVersion, a conflict re-reads and re-plans, and the bundle injected at
the end is always the one stored in the Secret.

The Secret (type ``kubernetes.io/tls``) holds ``tls.crt``, ``tls.key`` (serving pair),
``ca.crt`` (current CA), ``ca.key`` and ``ca-bundle.crt`` (all CAs still trusted).
Mount only ``tls.crt``/``tls.key`` into the server (``items:`` in the volume).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.pki.certificates import KeyPair, load_pem_certificates, service_dns_names
from webhook.pki.renewal import CertBundle, RenewalPolicy, plan

__all__ = [
    "SECRET_KEYS",
    "SyncResult",
    "bundle_from_secret_data",
    "inject_ca_bundle",
    "read_stored_bundle",
    "secret_body",
    "sync_certificates",
]

log = logging.getLogger(__name__)

SECRET_KEYS = ("tls.crt", "tls.key", "ca.crt", "ca.key", "ca-bundle.crt")
MANAGED_BY = "nfsguard-certs"
MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class SyncResult:
    """What one :func:`sync_certificates` run did."""

    secret_changes: tuple[str, ...]
    secret_created: bool
    webhooks_patched: tuple[str, ...]
    ca_not_after: dt.datetime
    serving_not_after: dt.datetime
    trusted_cas: int
    notes: tuple[str, ...] = field(default=())
    #: the MutatingWebhookConfiguration does not exist (yet): the Secret is written, the
    #: caBundle is not; run again once it exists (the CLI exits 1 so a Job retries)
    webhook_missing: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.secret_changes or self.webhooks_patched)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def bundle_from_secret_data(data: Mapping[str, Any] | None) -> CertBundle | None:
    """Parse a Secret's ``data`` (base64 values) into a bundle; None if incomplete or
    corrupt (then the next plan starts afresh)."""
    if not data:
        return None
    try:
        raw = {k: base64.b64decode(v) for k, v in data.items() if k in SECRET_KEYS}
        ca = KeyPair(raw["ca.crt"], raw["ca.key"])
        serving = KeyPair(raw["tls.crt"], raw["tls.key"])
        ca_bundle = raw.get("ca-bundle.crt") or raw["ca.crt"]
        ca.cert, serving.cert  # noqa: B018  (parse now: corrupt means "none")
        load_pem_certificates(ca_bundle)
    except (KeyError, ValueError):
        return None
    return CertBundle(ca=ca, serving=serving, ca_bundle=ca_bundle)


def secret_body(
    name: str, namespace: str, bundle: CertBundle, *, resource_version: str | None = None
) -> dict[str, Any]:
    """The Secret manifest storing ``bundle``."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/name": "nfsguard",
            "app.kubernetes.io/component": "webhook-tls",
            "app.kubernetes.io/managed-by": MANAGED_BY,
        },
        "annotations": {
            "nfsguard.io/ca-not-after": bundle.ca.not_after.isoformat(),
            "nfsguard.io/serving-not-after": bundle.serving.not_after.isoformat(),
        },
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata,
        "data": {
            "tls.crt": _b64(bundle.serving.cert_pem),
            "tls.key": _b64(bundle.serving.key_pem),
            "ca.crt": _b64(bundle.ca.cert_pem),
            "ca.key": _b64(bundle.ca.key_pem),
            "ca-bundle.crt": _b64(bundle.ca_bundle),
        },
    }


def read_stored_bundle(
    core: Any, namespace: str, name: str
) -> tuple[CertBundle | None, str | None, bool]:
    """(bundle or None, resourceVersion or None, secret exists)."""
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None, None, False
        raise
    return (
        bundle_from_secret_data(secret.data),
        secret.metadata.resource_version,
        True,
    )


def inject_ca_bundle(admreg: Any, webhook_config: str, ca_bundle: bytes) -> tuple[str, ...]:
    """Set ``clientConfig.caBundle`` of every webhook in the MutatingWebhookConfiguration
    ``webhook_config`` to ``ca_bundle``; returns the names of webhooks changed (empty
    if all were already right: no write at all). A JSON patch with ``test`` guards
    against a concurrent edit reordering the webhooks."""
    want = _b64(ca_bundle)
    for attempt in range(MAX_ATTEMPTS):
        mwc = admreg.read_mutating_webhook_configuration(webhook_config)
        ops: list[dict[str, Any]] = []
        names: list[str] = []
        for i, wh in enumerate(mwc.webhooks or []):
            if (wh.client_config.ca_bundle or "") == want:
                continue
            ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": wh.name})
            ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": want})
            names.append(wh.name)
        if not ops:
            return ()
        try:
            admreg.patch_mutating_webhook_configuration(webhook_config, ops)
        except ApiException as e:
            # 422: a "test" failed (the list changed under us); 409: conflict
            if e.status in (409, 422) and attempt + 1 < MAX_ATTEMPTS:
                continue
            raise
        log.info("caBundle of %s set for %s", webhook_config, ", ".join(names))
        return tuple(names)
    raise RuntimeError("unreachable")  # pragma: no cover


def _inject_if_present(
    admreg: Any, webhook_config: str, ca_bundle: bytes
) -> tuple[str, ...] | None:
    try:
        return inject_ca_bundle(admreg, webhook_config, ca_bundle)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def sync_certificates(
    api_client: Any,
    *,
    namespace: str,
    secret_name: str,
    webhook_config: str,
    service: str,
    extra_dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    now: dt.datetime | None = None,
    policy: RenewalPolicy | None = None,
) -> SyncResult:
    """Create or renew the certificates in the Secret and inject the trust bundle into
    the webhook configuration. Idempotent: a run with nothing due writes nothing.

    The serving certificate names the Service (``<service>.<namespace>.svc`` and the
    shorter/longer forms) plus ``extra_dns_names`` and ``ip_addresses`` (for a webhook
    registered by ``url``); a change of names re-issues it."""
    core: Any = client.CoreV1Api(api_client)
    admreg: Any = client.AdmissionregistrationV1Api(api_client)
    dns_names = [*service_dns_names(service, namespace), *extra_dns_names]
    notes: list[str] = []

    for _attempt in range(MAX_ATTEMPTS):
        current, rv, exists = read_stored_bundle(core, namespace, secret_name)
        if exists and current is None:
            notes.append(f"secret {namespace}/{secret_name} unreadable as a bundle; replacing")
        desired = plan(
            current,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            now=now,
            policy=policy or RenewalPolicy(),
        )
        created = False
        if desired.changed:
            # trust first (old + new CA), then the certificate from the new CA
            if current is not None:
                _inject_if_present(admreg, webhook_config, desired.ca_bundle)
            body = secret_body(secret_name, namespace, desired, resource_version=rv)
            try:
                if exists:
                    core.replace_namespaced_secret(secret_name, namespace, body)
                else:
                    core.create_namespaced_secret(namespace, body)
                    created = True
            except ApiException as e:
                if e.status == 409:  # someone else wrote it first: re-read, re-plan
                    notes.append("conflict writing the secret; retried")
                    continue
                raise
            log.info("secret %s/%s: %s", namespace, secret_name, "; ".join(desired.changes))
        patched = _inject_if_present(admreg, webhook_config, desired.ca_bundle)
        if patched is None:
            notes.append(f"MutatingWebhookConfiguration {webhook_config} not found")
        return SyncResult(
            secret_changes=desired.changes,
            secret_created=created,
            webhooks_patched=patched or (),
            ca_not_after=desired.ca.not_after,
            serving_not_after=desired.serving.not_after,
            trusted_cas=len(load_pem_certificates(desired.ca_bundle)),
            notes=tuple(notes),
            webhook_missing=patched is None,
        )
    raise RuntimeError(
        f"secret {namespace}/{secret_name} kept changing under us ({MAX_ATTEMPTS} attempts)"
    )
