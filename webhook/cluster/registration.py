"""Write, keep and remove the MutatingWebhookConfiguration nfsguard registers.

The document comes from ``webhook.registration.configuration`` (pure); this adapter
only talks to the apiserver:

- ``apply_configuration``: create it, or replace it when what nfsguard would write
  differs from what is there (a digest of the desired document in an annotation, and
  every field nfsguard sets still as it set it: the defaults the apiserver fills in
  never look like a change, a hand edit is repaired). A configuration of
  that name WITHOUT nfsguard's managed-by label was put there by someone else (a
  GitOps tool applying manifests/gitops/): it is left alone.
- ``delete_configuration``: uninstall; by default only one nfsguard registered.
- ``owner_of_cluster_role``: the ownerReference that lets the garbage collector remove
  the registered configuration when the shipped manifests are deleted (the ClusterRole
  that grants the registration goes with them).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.registration.configuration import MANAGED_BY, REGISTRAR

log = logging.getLogger("nfsguard.registration")

DIGEST = "nfsguard.io/configuration-sha256"

Json = dict[str, Any]
Applied = Literal["created", "updated", "unchanged", "foreign"]


def digest_of(desired: Json) -> str:
    text = json.dumps(desired, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _with_digest(desired: Json, owner: Json | None) -> Json:
    body = copy.deepcopy(desired)
    meta = body.setdefault("metadata", {})
    meta.setdefault("annotations", {})[DIGEST] = digest_of(desired)
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return body


def _plain(api: client.ApiClient) -> Any:
    return api


def managed(current: Any) -> bool:
    labels = (current.metadata.labels if current.metadata else None) or {}
    return bool(labels.get(MANAGED_BY) == REGISTRAR)


def apply_configuration(api: client.ApiClient, desired: Json, owner: Json | None = None) -> Applied:
    """Make the configuration ``desired`` (a MutatingWebhookConfiguration document) live."""
    # Any: the client's models are typed, and a plain document is what we have (the
    # client serializes a dict body as it is).
    admission: Any = client.AdmissionregistrationV1Api(api)
    name = str(desired["metadata"]["name"])
    body = _with_digest(desired, owner)
    try:
        current = admission.read_mutating_webhook_configuration(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        admission.create_mutating_webhook_configuration(body)
        log.info("MutatingWebhookConfiguration %s created", name)
        return "created"
    if not managed(current):
        return "foreign"
    annotations = (current.metadata.annotations if current.metadata else None) or {}
    owners = _plain(api).sanitize_for_serialization(current.metadata.owner_references or [])
    same = annotations.get(DIGEST) == digest_of(desired) and owners == ([owner] if owner else [])
    if same and _covers(_plain(api).sanitize_for_serialization(current), desired):
        return "unchanged"
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    admission.replace_mutating_webhook_configuration(name, body)  # 409 if edited meanwhile
    log.info("MutatingWebhookConfiguration %s updated", name)
    return "updated"


def _covers(current: Any, desired: Any) -> bool:
    """Whether ``current`` (as the apiserver returns it, defaults filled in) still holds
    every field of ``desired`` as nfsguard wrote it: a hand edit (a failurePolicy patched
    to Ignore, a matchCondition removed) is repaired on the next period."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            k in current and _covers(current[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(_covers(c, d) for c, d in zip(current, desired, strict=True))
        )
    return bool(current == desired)


def delete_configuration(api: client.ApiClient, name: str, *, only_managed: bool = True) -> str:
    """Remove the configuration ``name``: ``deleted``, ``absent`` or ``foreign`` (not
    registered by nfsguard and ``only_managed``: left alone)."""
    admission: Any = client.AdmissionregistrationV1Api(api)
    try:
        current = admission.read_mutating_webhook_configuration(name)
    except ApiException as exc:
        if exc.status == 404:
            return "absent"
        raise
    if only_managed and not managed(current):
        return "foreign"
    try:
        admission.delete_mutating_webhook_configuration(name)
    except ApiException as exc:
        if exc.status == 404:
            return "absent"
        raise
    return "deleted"


def owner_of_cluster_role(api: client.ApiClient, name: str) -> Json:
    """An ownerReference to the ClusterRole ``name`` (a cluster-scoped owner, as a
    cluster-scoped dependent needs). Raises ApiException when it cannot be read."""
    role: Any = client.RbacAuthorizationV1Api(api).read_cluster_role(name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "name": name,
        "uid": role.metadata.uid,
    }
