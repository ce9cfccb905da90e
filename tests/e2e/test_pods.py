"""Pods and workloads on the real kube-apiserver (docs/pods-and-workloads.md).

`nfsguard serve` registered with the shipped configuration (manifests/, pointed at
127.0.0.1; its second entry, pods.nfsguard.io, covers Pods and workloads), policy
tests/e2e/policies/main.yaml (192.0.2.10:/exports/** is pinned). No kubelet or
controllers run: Pods and workloads are only stored, which is all admission sees.

- every workload kind with an inline nfs volume to the pinned export is refused at
  create, with the message that names the volume, the rule and the PersistentVolume
  to use instead;
- every kind with a csi-driver-nfs inline volume is stored pinned; the stored object,
  created again, gets no patch and no warning (a second review changes nothing);
- with nfsguard stopped and failurePolicy Fail, Pods and Deployments without inline
  NFS volumes are created (matchConditions keep them from the webhook), one with an
  inline NFS volume is refused, a Deployment's scale goes through while a change of
  its NFS volume is refused, and kube-system is never sent (namespaceSelector).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import RegisterFactory, WebhookFactory
from tests.e2e.kubecluster import PIN, warnings_of
from tests.fixtures.samples import csi_volume, nfs_volume, pod_volumes, workload
from webhook.api.kube import POD_SPEC_POINTERS

POLICY = Path(__file__).resolve().parent / "policies" / "main.yaml"
NS = "nfsguard-e2e-pods"
SERVER = "192.0.2.10"
KINDS = list(POD_SPEC_POINTERS)
Json = dict[str, Any]


def _ensure_namespace(core: k8s.CoreV1Api, name: str) -> None:
    with contextlib.suppress(k8s.ApiException):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    with contextlib.suppress(k8s.ApiException):  # no controller-manager makes it here
        core.create_namespaced_service_account(
            name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="default"))
        )


@pytest.fixture(scope="module")
def namespace(api_client: k8s.ApiClient) -> Iterator[str]:
    core = k8s.CoreV1Api(api_client)
    _ensure_namespace(core, NS)
    _ensure_namespace(core, "kube-system")
    yield NS
    with contextlib.suppress(k8s.ApiException):
        core.delete_namespace(NS)


class Workloads:
    """Create, read and delete any pod-bearing kind as plain JSON (headers kept)."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        core, apps, batch = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.BatchV1Api(api)
        self.calls: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
            "Pod": (
                core.create_namespaced_pod_with_http_info,
                core.read_namespaced_pod,
                core.delete_namespaced_pod,
            ),
            "ReplicationController": (
                core.create_namespaced_replication_controller_with_http_info,
                core.read_namespaced_replication_controller,
                core.delete_namespaced_replication_controller,
            ),
            "Deployment": (
                apps.create_namespaced_deployment_with_http_info,
                apps.read_namespaced_deployment,
                apps.delete_namespaced_deployment,
            ),
            "ReplicaSet": (
                apps.create_namespaced_replica_set_with_http_info,
                apps.read_namespaced_replica_set,
                apps.delete_namespaced_replica_set,
            ),
            "StatefulSet": (
                apps.create_namespaced_stateful_set_with_http_info,
                apps.read_namespaced_stateful_set,
                apps.delete_namespaced_stateful_set,
            ),
            "DaemonSet": (
                apps.create_namespaced_daemon_set_with_http_info,
                apps.read_namespaced_daemon_set,
                apps.delete_namespaced_daemon_set,
            ),
            "Job": (
                batch.create_namespaced_job_with_http_info,
                batch.read_namespaced_job,
                batch.delete_namespaced_job,
            ),
            "CronJob": (
                batch.create_namespaced_cron_job_with_http_info,
                batch.read_namespaced_cron_job,
                batch.delete_namespaced_cron_job,
            ),
        }
        self.created: list[tuple[str, str, str]] = []

    def create(self, obj: Json, *, dry_run: bool = False) -> list[str]:
        """Create ``obj``; the warnings the client got."""
        kind, ns, name = obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
        create = self.calls[kind][0]
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        _, _, headers = create(ns, obj, **kwargs)
        if not dry_run:
            self.created.append((kind, ns, name))
        return warnings_of(headers)

    def read(self, kind: str, ns: str, name: str) -> Json:
        read = self.calls[kind][1](name, ns)
        stored = cast(Json, self.api.sanitize_for_serialization(read))  # type: ignore[no-untyped-call]
        stored["kind"] = kind
        return stored

    def delete_all(self) -> None:
        for kind, ns, name in self.created:
            with contextlib.suppress(k8s.ApiException):
                self.calls[kind][2](name, ns)


@pytest.fixture
def workloads(api_client: k8s.ApiClient) -> Iterator[Workloads]:
    w = Workloads(api_client)
    yield w
    w.delete_all()


def denial_message(exc: pytest.ExceptionInfo[k8s.ApiException]) -> str:
    assert exc.value.status == 403, exc.value.body
    message: str = json.loads(exc.value.body or "{}")["message"]
    return message


def test_inline_volumes_of_every_kind_are_denied_or_stored_pinned(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    namespace: str,
    workloads: Workloads,
) -> None:
    wh = start_webhook(POLICY)
    register(wh, name="nfsguard-e2e-pods")
    for kind in KINDS:
        name = f"nfs-{kind.lower()}"
        # an inline nfs volume to the pinned export: refused at apply, with the way out
        inline = workload(
            kind, [nfs_volume("data", SERVER, "/exports/app")], name=name, namespace=namespace
        )
        with pytest.raises(k8s.ApiException) as exc:
            workloads.create(inline)
        message = denial_message(exc)
        assert 'admission webhook "pods.nfsguard.io" denied the request' in message
        assert 'rule "pin-filer"' in message and 'volume "data"' in message
        assert "kind: PersistentVolume" in message and f"mountOptions: [{PIN}]" in message
        assert f"nfs: {{server: {SERVER}, path: /exports/app}}" in message

        # a csi-driver-nfs inline volume: stored pinned, every other option kept
        csi = workload(
            kind,
            [
                {"name": "cfg", "emptyDir": {}},
                csi_volume(
                    "shared",
                    server=SERVER,
                    share="/exports",
                    subdir="app",
                    mount_options="nfsvers=4.2,hard",
                ),
            ],
            name=f"csi-{kind.lower()}",
            namespace=namespace,
        )
        warnings = workloads.create(csi)
        assert any("nfsvers=4.0" in w and "volume shared" in w for w in warnings), warnings
        stored = workloads.read(kind, namespace, f"csi-{kind.lower()}")
        attrs = pod_volumes(stored)[1]["csi"]["volumeAttributes"]
        assert attrs["mountOptions"] == f"{PIN},hard", (kind, attrs)

        # the stored volumes, reviewed again (a dry-run create): nothing to change
        again = workload(
            kind, pod_volumes(stored), name=f"again-{kind.lower()}", namespace=namespace
        )
        assert workloads.create(again, dry_run=True) == [], kind


def test_pods_without_inline_nfs_are_created_while_nfsguard_is_down(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    namespace: str,
    workloads: Workloads,
) -> None:
    wh = start_webhook(POLICY)
    register(wh, name="nfsguard-e2e-pods-outage", failure_policy="Fail")
    nfs = workload(
        "Pod", [nfs_volume("data", SERVER, "/exports/o")], name="outage-nfs", namespace=namespace
    )
    with pytest.raises(k8s.ApiException):
        workloads.create(nfs, dry_run=True)  # live: refused by the policy itself
    kept = workload(
        "Deployment",
        [csi_volume("shared", server=SERVER, share="/exports", mount_options="hard")],
        name="outage-kept",
        namespace=namespace,
    )
    workloads.create(kept)  # pinned while nfsguard is up
    wh.stop()

    # an UPDATE that keeps the volumes (a scale) is never sent; one that changes them is
    apps = k8s.AppsV1Api(workloads.api)
    scale = [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    apps.patch_namespaced_deployment("outage-kept", namespace, scale)
    assert workloads.read("Deployment", namespace, "outage-kept")["spec"]["replicas"] == 3
    change = [
        {
            "op": "replace",
            "path": "/spec/template/spec/volumes/0/csi/volumeAttributes/mountOptions",
            "value": "nfsvers=4.2",
        }
    ]
    with pytest.raises(k8s.ApiException) as changed:
        apps.patch_namespaced_deployment("outage-kept", namespace, change)
    assert changed.value.status == 500 and "failed calling webhook" in (changed.value.body or "")

    # no NFS volume (a PVC, an emptyDir, none): never sent, created while nfsguard is down
    plain = workload(
        "Pod",
        [
            {"name": "claim", "persistentVolumeClaim": {"claimName": "c"}},
            {"name": "e", "emptyDir": {}},
        ],
        name="outage-plain",
        namespace=namespace,
    )
    assert workloads.create(plain) == []
    assert workloads.read("Pod", namespace, "outage-plain")["metadata"]["name"] == "outage-plain"
    none = workload("Deployment", None, name="outage-deploy", namespace=namespace)
    workloads.create(none)
    other_csi = workload(
        "Pod", [csi_volume("ebs", driver="ebs.csi.aws.com")], name="outage-ebs", namespace=namespace
    )
    workloads.create(other_csi)

    # an inline NFS volume reaches the stopped webhook: Fail refuses it
    with pytest.raises(k8s.ApiException) as exc:
        workloads.create(nfs)
    body = json.loads(exc.value.body or "{}")
    assert exc.value.status == 500 and "failed calling webhook" in body.get("message", "")
    assert "pods.nfsguard.io" in body["message"]

    # kube-system is never sent to it (namespaceSelector)
    system = workload(
        "Pod",
        [nfs_volume("data", SERVER, "/exports/o")],
        name="outage-system",
        namespace="kube-system",
    )
    workloads.create(system)
