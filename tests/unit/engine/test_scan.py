"""The classifier over every driver shape: each verdict, and every fixable patch applied
with jsonpatch and reviewed again (it must leave the object compliant)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from tests.fixtures.samples import LEGACY, csi_pv, pv, storage_class
from tests.support import engine_for
from webhook.engine.engine import Engine
from webhook.engine.scan import Classification, ScanVerdict, classify
from webhook.engine.scan_report import Uncovered, row, suggest_policy
from webhook.engine.stranded import PodIndex

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: site}
spec:
  version: "t-1"
  pin: "4.0"
  rules:
  - name: pin-incident
    match:
      exports:
      - server: 192.168.100.7
    action: pin
  - name: pin-subdir
    match:
      provisioners: ["*nfs-subdir-external-provisioner"]
    action: pin
  - name: pin-longhorn
    match:
      provisioners: [driver.longhorn.io]
    action: pin
  - name: pin-azure
    match:
      provisioners: [file.csi.azure.com]
    action: pin
  - name: deny-legacy
    match:
      exports:
      - server: 192.0.2.20
    action: deny
  - name: exempt-lab
    match:
      exports:
      - server: 192.0.2.30
    action: exempt
  - name: warn-lab
    match:
      exports:
      - server: 192.0.2.40
    action: warn
"""


@pytest.fixture(scope="module")
def engine() -> Engine:
    return engine_for([("site.yaml", POLICY)])


def classified(engine: Engine, obj: dict[str, Any]) -> Classification:
    c = classify(engine.evaluate(obj))
    assert c is not None
    return c


def longhorn_pv(attrs: dict[str, str] | None = None) -> dict[str, Any]:
    obj = csi_pv("lh", driver="driver.longhorn.io", attrs=attrs)
    obj["spec"]["csi"]["volumeAttributes"] = {"share": "true", **(attrs or {})}
    return obj


def longhorn_sc(params: dict[str, str] | None = None) -> dict[str, Any]:
    sc = storage_class("lh", provisioner="driver.longhorn.io", server=None, share=None)
    if params:
        sc["parameters"] = params
    return sc


def azure_pv() -> dict[str, Any]:
    obj = csi_pv("az", driver="file.csi.azure.com", attrs={"protocol": "nfs"})
    obj["spec"]["csi"]["volumeAttributes"] = {
        "protocol": "nfs",
        "storageAccount": "acct",
        "shareName": "s",
    }
    return obj


SHAPES: list[tuple[str, dict[str, Any], ScanVerdict]] = [
    ("in-tree negotiated", pv(mount_options=["hard"]), ScanVerdict.FIXABLE),
    ("in-tree no options", pv(), ScanVerdict.FIXABLE),
    ("in-tree explicit 4.1", pv(mount_options=["vers=4.1,hard"]), ScanVerdict.FIXABLE),
    ("in-tree pinned", pv(mount_options=["nfsvers=4.0"]), ScanVerdict.COMPLIANT),
    ("in-tree v3", pv(mount_options=["nfsvers=3"]), ScanVerdict.COMPLIANT),
    ("legacy annotation", pv(annotations={LEGACY: "hard,vers=4.2"}), ScanVerdict.FIXABLE),
    ("legacy annotation pinned", pv(annotations={LEGACY: "vers=4.0"}), ScanVerdict.COMPLIANT),
    ("csi-driver-nfs", csi_pv(mount_options=["hard"]), ScanVerdict.FIXABLE),
    (
        "csi-driver-nfs version in attributes",
        csi_pv(attrs={"mountOptions": "vers=4.1"}),
        ScanVerdict.NOT_FIXABLE,
    ),
    (
        "csi-driver-nfs pinned flags plus attribute version",
        csi_pv(mount_options=["nfsvers=4.0"], attrs={"mountOptions": "nfsvers=4.2"}),
        ScanVerdict.NOT_FIXABLE,
    ),
    (
        "csi-driver-nfs attribute key case",
        csi_pv(attrs={"MountOptions": "vers=4.1"}),
        ScanVerdict.NOT_FIXABLE,
    ),
    (
        "csi-driver-nfs attribute pinned",
        csi_pv(attrs={"mountOptions": "vers=4.0"}),
        ScanVerdict.COMPLIANT,
    ),
    ("csi StorageClass", storage_class(), ScanVerdict.FIXABLE),
    (
        "subdir StorageClass",
        storage_class(
            provisioner="k8s-sigs.io/nfs-subdir-external-provisioner", server=None, share=None
        ),
        ScanVerdict.FIXABLE,
    ),
    ("longhorn PV defaults", longhorn_pv(), ScanVerdict.NOT_FIXABLE),
    (
        "longhorn PV nfsOptions",
        longhorn_pv({"nfsOptions": "vers=4.1,hard"}),
        ScanVerdict.NOT_FIXABLE,
    ),
    ("longhorn PV pinned", longhorn_pv({"nfsOptions": "vers=4.0,hard"}), ScanVerdict.COMPLIANT),
    ("longhorn StorageClass", longhorn_sc({"nfsOptions": "vers=4.2"}), ScanVerdict.NOT_FIXABLE),
    ("azure files: never pinned", azure_pv(), ScanVerdict.COMPLIANT),
    ("deny rule", pv(server="192.0.2.20"), ScanVerdict.DENIED),
    ("exempt rule", pv(server="192.0.2.30"), ScanVerdict.EXEMPT),
    ("warn rule: admitted unchanged", pv(server="192.0.2.40"), ScanVerdict.COMPLIANT),
    ("no rule", pv(server="198.51.100.1"), ScanVerdict.COMPLIANT),
]


@pytest.mark.parametrize(
    ("obj", "verdict"), [(o, v) for _, o, v in SHAPES], ids=[s[0] for s in SHAPES]
)
def test_every_shape_gets_its_verdict(
    engine: Engine, obj: dict[str, Any], verdict: ScanVerdict
) -> None:
    c = classified(engine, obj)
    assert c.verdict is verdict, c.reason
    if verdict is ScanVerdict.FIXABLE:
        assert c.patch
        fixed = jsonpatch.apply_patch(copy.deepcopy(obj), list(c.patch))
        again = classified(engine, fixed)
        assert again.verdict is ScanVerdict.COMPLIANT
        assert (
            again.evaluation.effective is not None and again.evaluation.effective.version == "4.0"
        )
        # the patch writes only fields an UPDATE may change (pkg/apis/core/validation)
        assert all(
            not op["path"].startswith(("/spec/csi", "/spec/nfs", "/parameters")) for op in c.patch
        )
    else:
        assert c.patch is None
    if verdict is ScanVerdict.NOT_FIXABLE:
        assert "cannot change after creation" in c.reason and c.way_out


def test_the_way_out_names_the_driver_procedure(engine: Engine) -> None:
    csi = classified(engine, csi_pv("v", attrs={"mountOptions": "vers=4.1"}))
    assert "Retain" in csi.way_out and "claimRef" in csi.way_out and "restore" in csi.way_out
    assert "re-provision" in classified(engine, longhorn_pv()).way_out
    assert (
        "delete it and create it again"
        in classified(engine, longhorn_sc({"nfsOptions": "vers=4.2"})).way_out
    )


def test_out_of_scope_is_none(engine: Engine) -> None:
    host_path = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "h"},
        "spec": {"hostPath": {"path": "/x"}},
    }
    assert classify(engine.evaluate(host_path)) is None


def test_at_risk_verdicts() -> None:
    assert {v for v in ScanVerdict if v.at_risk} == {
        ScanVerdict.FIXABLE,
        ScanVerdict.NOT_FIXABLE,
        ScanVerdict.DENIED,
    }


def _pod(
    name: str, claim: str, *, phase: str = "Pending", creating: bool = True, owner: bool = True
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "dev", "uid": name}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "controller": True}]
    status: dict[str, Any] = {"phase": phase}
    if creating:
        status["containerStatuses"] = [
            {"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": "node003",
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}],
        },
        "status": status,
    }


def _event(
    pod: str, message: str = "timeout expired waiting for volumes to attach or mount"
) -> dict[str, Any]:
    return {
        "kind": "Event",
        "reason": "FailedMount",
        "count": 50,
        "message": message,
        "involvedObject": {"kind": "Pod", "namespace": "dev", "name": pod},
    }


def test_stranded_needs_pending_container_creating_and_failed_mount() -> None:
    idx = PodIndex()
    for obj in [
        _event("stuck"),
        _pod("stuck", "c1"),
        _pod("no-events", "c1"),
        _pod("running", "c1", phase="Running", creating=False),
        _event("running"),
        {
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c1", "namespace": "dev"},
            "spec": {"volumeName": "pv1"},
        },
        {
            "kind": "Event",
            "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "namespace": "dev", "name": "no-events"},
        },
    ]:
        idx.add(obj)
    pods = {p.name: p for p in idx.pods_of("pv1")}
    assert {n: p.stranded for n, p in pods.items()} == {
        "stuck": True,
        "no-events": False,
        "running": False,
    }
    assert pods["stuck"].failed_mounts == 50 and pods["stuck"].node == "node003"
    assert pods["stuck"].controller == "ReplicaSet/rs"
    assert idx.pods_of("other") == []
    assert idx.claim_of("pv1") == ("dev", "c1")


def test_events_k8s_io_shape_counts_too() -> None:
    idx = PodIndex()
    idx.add(_pod("stuck", "c1"))
    idx.add(
        {
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c1", "namespace": "dev"},
            "spec": {"volumeName": "pv1"},
        }
    )
    idx.add(
        {
            "kind": "Event",
            "apiVersion": "events.k8s.io/v1",
            "reason": "FailedMount",
            "note": "MountVolume.SetUp failed",
            "series": {"count": 7},
            "regarding": {"kind": "Pod", "namespace": "dev", "name": "stuck"},
        }
    )
    (pod,) = idx.pods_of("pv1")
    assert pod.stranded and pod.failed_mounts == 7 and pod.messages == ["MountVolume.SetUp failed"]


def test_uncovered_stranded_export_gets_a_suggested_rule(engine: Engine) -> None:
    idx = PodIndex()
    idx.add(_pod("q", "c1"))
    idx.add(_event("q"))
    idx.add(
        {
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c1", "namespace": "dev"},
            "spec": {"volumeName": "pv-q"},
        }
    )
    c = classified(engine, pv("pv-q", server="198.51.100.9", path="/export/q"))
    pods = idx.pods_of("pv-q")
    r = row(c, pods)
    assert r["verdict"] == "compliant" and r["covered"] is False and r["rule"] is None
    assert r["pods"][0]["stranded"] is True
    uncovered = Uncovered()
    assert uncovered.note(c, pods)
    policy = suggest_policy(uncovered.exports.values(), version="s-1")
    (rule,) = policy["spec"]["rules"]
    assert rule["action"] == "pin" and rule["match"]["exports"] == [
        {"server": "198.51.100.9", "path": "/export/q"}
    ]
    assert "node003" in rule["description"] and "dev/q" in rule["description"]
    import yaml

    suggested = engine_for([("site.yaml", POLICY), ("suggested.yaml", yaml.safe_dump(policy))])
    assert (
        classified(suggested, pv("pv-q", server="198.51.100.9", path="/export/q")).verdict
        is ScanVerdict.FIXABLE
    )
    # a covered export is never suggested
    assert not Uncovered().note(classified(engine, pv()), pods)
