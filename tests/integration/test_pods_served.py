"""Pods and workloads through the real server: ``nfsguard serve`` (gunicorn over TLS on
127.0.0.1), every pod-bearing kind and every action, answered as kube-apiserver reads
it; patches applied with jsonpatch and the patched object reviewed again (no second
patch); the audit trail verifies and names each volume; the metrics count each kind.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest

from tests.fixtures.samples import csi_volume, nfs_volume, pod_volumes, workload
from tests.integration.conftest import (
    NFSGUARD,
    ServerHandle,
    admission_review,
    post_review,
    start_server,
)
from webhook.api.kube import POD_SPEC_POINTERS

KINDS = list(POD_SPEC_POINTERS)

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: pods-served}
spec:
  version: "2026.12.04-1"
  rules:
  - {name: pin-deny-inline, match: {exports: [{server: 192.0.2.10}]}, action: pin}
  - {name: pin-warn-inline, match: {exports: [{server: 192.0.2.11}]}, action: pin, onInline: warn}
  - {name: pin-audit-inline, match: {exports: [{server: 192.0.2.12}]}, action: pin, onInline: audit}
  - {name: deny, match: {exports: [{server: 192.0.2.20}]}, action: deny}
  - {name: warn, match: {exports: [{server: 192.0.2.30}]}, action: warn}
  - {name: audit, match: {exports: [{server: 192.0.2.40}]}, action: audit}
  - {name: exempt, match: {exports: [{server: 192.0.2.50}]}, action: exempt}
"""

#: server -> (outcome of an inline nfs volume, of a csi inline volume asking for 4.2)
CASES = {
    "192.0.2.10": ("denied", "mutated"),
    "192.0.2.11": ("warned", "mutated"),
    "192.0.2.12": ("audited", "mutated"),
    "192.0.2.20": ("denied", "denied"),
    "192.0.2.30": ("warned", "warned"),
    "192.0.2.40": ("audited", "audited"),
    "192.0.2.50": ("exempt", "exempt"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    tmp = tmp_path_factory.mktemp("pods-served")
    (tmp / "policy.yaml").write_text(POLICY)
    handle = start_server([tmp / "policy.yaml"], tmp / "server")
    yield handle
    handle.stop()


def answer(server: ServerHandle, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    response = post_review(server, admission_review(obj, **kw))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    return dict(body["response"])


def applied(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "patch" not in response:
        return obj
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    patched: dict[str, Any] = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(obj))
    return patched


@pytest.mark.parametrize("server_ip", list(CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_and_action_served(server: ServerHandle, kind: str, server_ip: str) -> None:
    nfs_outcome, csi_outcome = CASES[server_ip]
    inline = workload(kind, [nfs_volume("data", server_ip, "/exports/a")], name=f"n-{kind}")
    got = answer(server, inline)
    assert got["allowed"] is (nfs_outcome != "denied"), got
    assert "patch" not in got
    if nfs_outcome == "denied":
        message = got["status"]["message"]
        assert got["status"]["code"] == 403 and 'volume "data"' in message
        assert "nfsvers=4.0" in message
    if nfs_outcome == "warned":
        assert got["warnings"] and all(len(w) < 120 for w in got["warnings"])
    if nfs_outcome in ("denied", "warned", "audited", "exempt"):
        assert got["auditAnnotations"]["outcome"] == nfs_outcome

    csi = workload(
        kind,
        [csi_volume("shared", server=server_ip, share="/exports", mount_options="nfsvers=4.2")],
        name=f"c-{kind}",
    )
    got = answer(server, csi)
    assert got["auditAnnotations"]["outcome"] == csi_outcome, got
    patched = applied(csi, got)
    if csi_outcome == "mutated":
        attrs = pod_volumes(patched)[0]["csi"]["volumeAttributes"]
        assert attrs["mountOptions"] == "nfsvers=4.0"
        again = answer(server, patched)  # reinvocation: nothing more to change
        assert again["allowed"] and "patch" not in again and not again.get("warnings")
    else:
        assert patched == csi


def test_a_pod_without_nfs_and_a_malformed_pod(server: ServerHandle) -> None:
    plain = answer(server, workload("Pod", [{"name": "e", "emptyDir": {}}]))
    assert plain["allowed"] and "patch" not in plain and "auditAnnotations" not in plain
    broken = workload("Pod", [nfs_volume()])
    broken["spec"]["volumes"] = {"data": {"nfs": {}}}
    got = answer(server, broken)
    assert got["allowed"] is False and got["status"]["code"] == 400
    assert "spec.volumes must be a list" in got["status"]["message"]


def test_audit_trail_and_metrics_name_pods_and_workloads(server: ServerHandle) -> None:
    obj = workload(
        "Deployment",
        [csi_volume("a", server="192.0.2.10", share="/x"), nfs_volume("b", "192.0.2.11", "/y")],
        name="audited-deploy",
        namespace="team-a",
    )
    got = answer(server, obj)
    assert got["allowed"] and len(got["warnings"]) == 2
    records = server.audit_records()
    mine = [r for r in records if r.get("request", {}).get("name") == "audited-deploy"]
    (record,) = mine
    assert record["request"]["kind"] == "Deployment" and record["outcome"] == "mutated"
    assert record["target"]["volume"] == "a"
    assert [(v["name"], v["outcome"]) for v in record["volumes"]] == [
        ("a", "mutated"),
        ("b", "warned"),
    ]
    checked = subprocess.run(
        [str(NFSGUARD), "audit", "verify", str(server.audit_log.parent), "--allow-unsigned"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    metrics = server.get("/metrics").text
    assert 'nfsguard_reviews_total{kind="Deployment",outcome="mutated"}' in metrics
    assert 'nfsguard_reviews_total{kind="CronJob",outcome="denied"}' in metrics


def _records(server: ServerHandle, uid: str) -> list[dict[str, Any]]:
    return [r for r in server.audit_records() if r.get("request", {}).get("uid") == uid]


@pytest.mark.parametrize("kind", KINDS)
def test_dry_run_gets_the_answer_of_the_real_request_and_is_recorded_as_such(
    server: ServerHandle, kind: str
) -> None:
    """``kubectl apply --dry-run=server`` (dryRun: true) is told exactly what the real
    request would be: the same denial, the same patch; the audit trail marks it."""
    inline = workload(kind, [nfs_volume("data", "192.0.2.10", "/exports/d")], name="dry-n")
    csi = workload(
        kind,
        [csi_volume("shared", server="192.0.2.10", share="/exports", mount_options="hard")],
        name="dry-c",
    )
    for obj in (inline, csi):
        real = answer(server, obj)
        dry_review = admission_review(obj, dry_run=True)
        uid = dry_review["request"]["uid"]
        response = post_review(server, dry_review)
        assert response.status_code == 200, response.text
        dry = dict(response.json()["response"])
        assert dry["uid"] == uid
        for key in ("allowed", "status", "patch", "patchType", "warnings"):
            assert dry.get(key) == real.get(key), (kind, key)
        (record,) = _records(server, uid)
        assert record["request"]["dryRun"] is True and record["request"]["kind"] == kind
    assert real["allowed"] and "patch" in real  # the csi one: pinned, in a dry run too


SUBRESOURCES = [
    # (resource kind, subresource, operation, the request's kind and object)
    ("Pod", "status", "UPDATE", None),
    ("Pod", "ephemeralcontainers", "UPDATE", None),
    ("Pod", "binding", "CREATE", {"group": "", "version": "v1", "kind": "Binding"}),
    ("Pod", "eviction", "CREATE", {"group": "policy", "version": "v1", "kind": "Eviction"}),
    ("Deployment", "scale", "UPDATE", {"group": "autoscaling", "version": "v1", "kind": "Scale"}),
    ("StatefulSet", "status", "UPDATE", None),
    ("CronJob", "status", "UPDATE", None),
]


@pytest.mark.parametrize(("kind", "sub", "operation", "request_kind"), SUBRESOURCES)
def test_subresources_are_let_through_untouched(
    server: ServerHandle,
    kind: str,
    sub: str,
    operation: str,
    request_kind: dict[str, str] | None,
) -> None:
    """A subresource write (status, binding, eviction, ephemeral containers, scale)
    never changes a pod spec's volumes: allowed, unpatched, unrecorded, even for an
    object whose inline volume a rule denies (a stricter registration may send them)."""
    obj = workload(kind, [nfs_volume("data", "192.0.2.20", "/exports/s")], name=f"sub-{sub}")
    body: dict[str, Any] = obj
    if request_kind is not None:  # the subresource's own object, naming the pod
        body = {
            "apiVersion": "/".join(p for p in (request_kind["group"], "v1") if p),
            "kind": request_kind["kind"],
            "metadata": {"name": obj["metadata"]["name"], "namespace": "apps"},
        }
    review = admission_review(
        body,
        operation=operation,
        old=obj if operation == "UPDATE" else None,
        kind=kind,
        sub_resource=sub,
    )
    if request_kind is not None:
        review["request"]["kind"] = review["request"]["requestKind"] = request_kind
    response = post_review(server, review)
    assert response.status_code == 200, response.text
    got = response.json()["response"]
    assert got["allowed"] is True, got
    assert "patch" not in got and not got.get("warnings") and "auditAnnotations" not in got
    assert _records(server, review["request"]["uid"]) == []


NODES_YAML = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: old
    labels: {kubernetes.io/hostname: old, kernel: el7}
  status: {nodeInfo: {kernelVersion: 3.10.0-1160.el7.x86_64}}
- apiVersion: v1
  kind: Node
  metadata:
    name: new
    labels: {kubernetes.io/hostname: new, kernel: el9}
  status: {nodeInfo: {kernelVersion: 5.14.0-362.el9.x86_64}}
"""

KERNEL_POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: kernels-served}
spec:
  version: "k-1"
  rules:
  - name: el7-nodes
    match:
      exports: [{server: 192.0.2.60}]
      nodeKernels: [{family: el7}]
    action: deny
"""


def _required(key: str, operator: str, values: list[str]) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": key, "operator": operator, "values": values}]}
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
            }
        }
    }


@pytest.fixture(scope="module")
def kernel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    tmp = tmp_path_factory.mktemp("pods-kernels")
    (tmp / "policy.yaml").write_text(KERNEL_POLICY)
    (tmp / "nodes.yaml").write_text(NODES_YAML)
    handle = start_server(
        [tmp / "policy.yaml"], tmp / "server", ["--nodes", str(tmp / "nodes.yaml")]
    )
    yield handle
    handle.stop()


@pytest.mark.parametrize(
    ("scope", "denied"),
    [
        ({}, True),  # may run anywhere, the el7 node among them
        ({"nodeName": "old"}, True),
        ({"nodeName": "new"}, False),
        ({"nodeSelector": {"kernel": "el7"}}, True),
        ({"nodeSelector": {"kernel": "el9"}}, False),
        (_required("kernel", "NotIn", ["el7"]), False),
        (_required("kubernetes.io/hostname", "In", ["old"]), True),
    ],
    ids=["anywhere", "name-old", "name-new", "selector-el7", "selector-el9", "not-el7", "host-old"],
)
@pytest.mark.parametrize("kind", ["Pod", "Deployment", "DaemonSet", "CronJob"])
def test_the_pod_specs_node_scope_selects_the_kernel_rule(
    kernel_server: ServerHandle, kind: str, scope: dict[str, Any], denied: bool
) -> None:
    """A rule for el7 nodes holds for a pod (template) that may run on the el7 node,
    through nodeName, nodeSelector or required node affinity, and for no other."""
    obj = workload(kind, [nfs_volume("data", "192.0.2.60", "/exports/k")], **scope)
    got = answer(kernel_server, obj)
    assert got["allowed"] is (not denied), got
    if denied:
        assert 'rule "el7-nodes"' in got["status"]["message"]
        assert got["auditAnnotations"]["rule"] == "el7-nodes"
    else:
        assert "auditAnnotations" not in got and "patch" not in got
