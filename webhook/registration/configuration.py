"""The MutatingWebhookConfiguration, as one function of the loaded policies and profiles.

``nfsguard webhook-config`` prints it (GitOps), ``nfsguard serve --register`` writes it
(webhook/cluster/registration.py), and manifests/gitops/90-webhook.yaml is its output
for the shipped policies (tests/unit/install/test_manifests.py fails on drift): one
code path, so a static configuration and a registered one cannot disagree. Pure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from webhook.api.kube import POD_KIND_RESOURCES
from webhook.engine.engine import Engine
from webhook.registration.scope import Scope, match_conditions, pod_match_conditions

#: Labels on every configuration nfsguard writes. ``managed-by`` marks it as
#: registered by ``serve --register``: a configuration without it (applied by GitOps)
#: is never overwritten or deleted by the registration loop.
MANAGED_BY = "app.kubernetes.io/managed-by"
REGISTRAR = "nfsguard-serve"
BASE_LABELS = {"app.kubernetes.io/name": "nfsguard", "app.kubernetes.io/component": "webhook"}

FailurePolicy = Literal["Fail", "Ignore"]

Json = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """Where the apiserver calls the webhook: a Service, or a URL (out-of-cluster,
    and the only way on a harness without kube-proxy)."""

    service_namespace: str = "nfsguard"
    service_name: str = "nfsguard"
    service_port: int = 443
    path: str = "/mutate"
    url: str | None = None

    def client_config(self, ca_bundle: bytes | None) -> Json:
        out: Json
        if self.url:
            out = {"url": self.url}
        else:
            out = {
                "service": {
                    "namespace": self.service_namespace,
                    "name": self.service_name,
                    "path": self.path,
                    "port": self.service_port,
                }
            }
        if ca_bundle:
            out["caBundle"] = base64.b64encode(ca_bundle).decode()
        return out


@dataclass(frozen=True)
class WebhookSettings:
    name: str = "nfsguard"  # the MutatingWebhookConfiguration's name
    webhook_name: str = "pv.nfsguard.io"
    endpoint: Endpoint = Endpoint()
    failure_policy: FailurePolicy = "Fail"
    timeout_seconds: int = 5
    #: The namespace the webhook runs in: never sent to it (no self-deadlock).
    own_namespace: str = "nfsguard"
    managed: bool = False  # True: written by serve --register (the managed-by label)
    #: The failurePolicy of the Pods-and-workloads entry, or None for no such entry
    #: (``--pods off``). Fail by default, for the reasons in docs/pods-and-workloads.md.
    pods: FailurePolicy | None = "Fail"

    @property
    def pods_webhook_name(self) -> str:
        """``pods.nfsguard.io`` next to ``pv.nfsguard.io`` (names must differ)."""
        rest = self.webhook_name.removeprefix("pv.")
        return "pods." + rest


def pv_and_storage_class_rules() -> list[Json]:
    """CREATE and UPDATE of PersistentVolumes and StorageClasses (never a subresource):
    the webhook's rules, and the native policies' matchConstraints (webhook/native)."""
    return [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["persistentvolumes"],
            "scope": "Cluster",
        },
        {
            "apiGroups": ["storage.k8s.io"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["storageclasses"],
            "scope": "Cluster",
        },
    ]


def opt_out_selector() -> Json:
    """Objects labelled ``nfsguard.io/skip: "true"`` are never sent (docs/operations.md)."""
    return {
        "matchExpressions": [{"key": "nfsguard.io/skip", "operator": "NotIn", "values": ["true"]}]
    }


def webhook_configuration(
    engine: Engine, settings: WebhookSettings, *, ca_bundle: bytes | None = None
) -> Json:
    """The MutatingWebhookConfiguration for ``engine``'s policies and profiles."""
    labels = dict(BASE_LABELS)
    scope = Scope.of(engine)
    if settings.managed:
        labels[MANAGED_BY] = REGISTRAR
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": settings.name, "labels": labels},
        "webhooks": [
            {
                "name": settings.webhook_name,
                "admissionReviewVersions": ["v1"],
                "clientConfig": settings.endpoint.client_config(ca_bundle),
                # None: the audit record is the webhook's own log of its answer, and a
                # dry run is recorded as one (docs/operations.md, "sideEffects").
                "sideEffects": "None",
                "failurePolicy": settings.failure_policy,
                "matchPolicy": "Equivalent",
                "timeoutSeconds": settings.timeout_seconds,
                # Another webhook may change mount options after us: review again.
                "reinvocationPolicy": "IfNeeded",
                "rules": pv_and_storage_class_rules(),
                # Opt-out: an object labelled nfsguard.io/skip=true is never sent here.
                "objectSelector": opt_out_selector(),
                # Ignored for cluster-scoped PVs/StorageClasses; here so a namespaced rule
                # added later can never send the webhook's own namespace to it.
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": [settings.own_namespace],
                        }
                    ]
                },
                "matchConditions": match_conditions(scope),
            },
            *([pods_webhook(scope, settings, ca_bundle)] if settings.pods else []),
        ],
    }


#: Namespaces whose pods are never sent to the Pods-and-workloads entry: the system's
#: own (its controllers must always run) and, added per settings, nfsguard's.
SYSTEM_NAMESPACES = ("kube-system",)


def pods_webhook(scope: Scope, settings: WebhookSettings, ca_bundle: bytes | None) -> Json:
    """The entry for Pods and the workloads with a pod template. Pods only on CREATE (a
    pod's volumes never change); workloads on CREATE and UPDATE. matchConditions send
    only objects with an inline NFS or NFS CSI volume, the namespaceSelector never
    nfsguard's own namespace nor kube-system."""
    by_group: dict[str, list[str]] = {}
    for group, resource in POD_KIND_RESOURCES.values():
        if resource != "pods":
            by_group.setdefault(group, []).append(resource)
    rules: list[Json] = [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    for group, resources in by_group.items():
        rules.append(
            {
                "apiGroups": [group],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": sorted(resources),
                "scope": "Namespaced",
            }
        )
    excluded = sorted({settings.own_namespace, *SYSTEM_NAMESPACES})
    return {
        "name": settings.pods_webhook_name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": settings.endpoint.client_config(ca_bundle),
        "sideEffects": "None",
        "failurePolicy": settings.pods,
        "matchPolicy": "Equivalent",
        "timeoutSeconds": settings.timeout_seconds,
        "reinvocationPolicy": "IfNeeded",
        "rules": rules,
        "objectSelector": opt_out_selector(),
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}
            ]
        },
        "matchConditions": pod_match_conditions(scope),
    }


def ca_bundle_of(configuration: Json) -> str | None:
    """The first webhook's caBundle (base64), if any."""
    for wh in configuration.get("webhooks") or ():
        value = (wh.get("clientConfig") or {}).get("caBundle")
        if value:
            return str(value)
    return None
