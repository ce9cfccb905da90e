"""A change between ``remediate``'s plan and its patch is neither lost nor overwritten:
the resourceVersion precondition makes the real apiserver answer 409, and the object
is read again and planned again (webhook/cli/remediate.py, webhook/cluster/scan.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.e2e.kubecluster import Cleanup, nfs_pv, pv_model
from webhook.audit import NullAuditRecorder
from webhook.cli.remediate import Applier
from webhook.cli.scanning import Scanned, evaluate_one
from webhook.cluster.client import make_api_client
from webhook.cluster.scan import ClusterObjects, Conflict
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.engine.scan import ScanVerdict
from webhook.files import packaged
from webhook.nfs.inventory import UnknownInventory

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: remediate-e2e}
spec:
  version: "r-1"
  pin: "4.0"
  rules:
  - name: pin-filer
    match:
      exports:
      - server: 192.0.2.77
    action: pin
"""


@pytest.fixture
def engine() -> Engine:
    loaded = load(
        [("policy.yaml", POLICY)],
        builtin_profiles=packaged.builtin_profiles(),
        schemas=packaged.schemas(),
    ).checked()
    return Engine(loaded.policies, loaded.profiles)


@pytest.fixture
def cluster(kubeconfig: Path) -> ClusterObjects:
    return ClusterObjects(make_api_client(kubeconfig), page=50)


def planned(cluster: ClusterObjects, engine: Engine, name: str) -> Scanned:
    obj = cluster.get("PersistentVolume", name)
    assert obj is not None
    c = evaluate_one(engine, obj, UnknownInventory("test"), name)
    assert c is not None and c.verdict is ScanVerdict.FIXABLE
    return Scanned(obj, c, [])


def options(core: k8s.CoreV1Api, name: str) -> list[str] | None:
    """The PV's spec.mountOptions as the apiserver stored them."""
    spec = core.read_persistent_volume(name).spec
    assert spec is not None
    return spec.mount_options


def applier(cluster: ClusterObjects, engine: Engine) -> Applier:
    return Applier(cluster, engine, UnknownInventory("test"), NullAuditRecorder(), "test", 3)


def test_a_stale_patch_is_refused_with_409(
    cluster: ClusterObjects, engine: Engine, core_v1: k8s.CoreV1Api, cleanup: Cleanup
) -> None:
    name = cleanup.pv("remediate-stale")
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.77", "/e", ["hard"])))
    scanned = planned(cluster, engine, name)
    core_v1.patch_persistent_volume(name, {"metadata": {"labels": {"touched": "yes"}}})
    with pytest.raises(Conflict):
        cluster.patch(
            "PersistentVolume",
            name,
            scanned.resource_version,
            list(scanned.classification.patch or ()),
        )
    assert options(core_v1, name) == ["hard"]


def test_a_concurrent_change_is_kept_and_the_pin_replanned(
    cluster: ClusterObjects, engine: Engine, core_v1: k8s.CoreV1Api, cleanup: Cleanup
) -> None:
    name = cleanup.pv("remediate-concurrent")
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.77", "/e", ["hard"])))
    scanned = planned(cluster, engine, name)
    # someone else edits the options between the plan and the patch
    core_v1.patch_persistent_volume(
        name, {"spec": {"mountOptions": ["hard", "noatime", "vers=4.1"]}}
    )
    result = applier(cluster, engine).apply(scanned)
    assert result["result"] == "applied" and result["attempts"] == 2
    assert options(core_v1, name) == [
        "hard",
        "noatime",
        "nfsvers=4.0",
    ]


def test_a_concurrent_fix_is_left_alone(
    cluster: ClusterObjects, engine: Engine, core_v1: k8s.CoreV1Api, cleanup: Cleanup
) -> None:
    name = cleanup.pv("remediate-raced")
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.77", "/e", ["hard"])))
    scanned = planned(cluster, engine, name)
    core_v1.patch_persistent_volume(name, {"spec": {"mountOptions": ["soft", "vers=4.0"]}})
    result = applier(cluster, engine).apply(scanned)
    assert result["result"] == "changed meanwhile, now compliant: left alone"
    assert options(core_v1, name) == ["soft", "vers=4.0"]


def test_who_runs_it_is_the_user_the_apiserver_authenticates(cluster: ClusterObjects) -> None:
    # the harness's kubeconfig user (a client certificate), as a SelfSubjectReview says
    assert cluster.whoami() != ""


def test_the_csi_way_out_runs_as_printed_on_the_apiserver(
    cluster: ClusterObjects, engine: Engine, core_v1: k8s.CoreV1Api, cleanup: Cleanup
) -> None:
    """The API steps of the printed procedure for a bound csi-driver-nfs PV: Retain,
    delete, release the finalizers pv-protection holds it with, recreate with the same
    name and claimRef and fixed options. (Binding again is the PV controller's, which
    this harness does not run.)"""
    name = cleanup.pv("remediate-recreate")
    obj = nfs_pv(name, "192.0.2.77", "/csi", csi=True)
    obj["spec"]["csi"]["volumeAttributes"]["mountOptions"] = "hard,vers=4.1"
    obj["spec"]["claimRef"] = {"namespace": "default", "name": "data", "uid": "1234"}
    # what the StorageObjectInUseProtection admission plugin adds in a full cluster (this
    # harness's apiserver runs without it): the finalizer that holds a bound PV
    obj["metadata"]["finalizers"] = ["kubernetes.io/pv-protection"]
    core_v1.create_persistent_volume(pv_model(obj))
    current = cluster.get("PersistentVolume", name)
    assert current is not None
    c = evaluate_one(engine, current, UnknownInventory("test"), name)
    assert c is not None and c.verdict is ScanVerdict.NOT_FIXABLE
    assert "pv-protection" in c.way_out
    assert "kubernetes.io/pv-protection" in current["metadata"]["finalizers"]

    core_v1.patch_persistent_volume(name, {"spec": {"persistentVolumeReclaimPolicy": "Retain"}})
    core_v1.delete_persistent_volume(name)
    terminating = cluster.get("PersistentVolume", name)
    assert terminating is not None and "deletionTimestamp" in terminating["metadata"]
    core_v1.patch_persistent_volume(name, {"metadata": {"finalizers": None}})
    assert cluster.get("PersistentVolume", name) is None

    fixed = nfs_pv(name, "192.0.2.77", "/csi", ["nfsvers=4.0"], csi=True)
    fixed["spec"]["csi"]["volumeAttributes"]["mountOptions"] = "hard"
    fixed["spec"]["claimRef"] = {"namespace": "default", "name": "data", "uid": "1234"}
    core_v1.create_persistent_volume(pv_model(fixed))
    again = cluster.get("PersistentVolume", name)
    assert again is not None and again["spec"]["claimRef"]["uid"] == "1234"
    c = evaluate_one(engine, again, UnknownInventory("test"), name)
    assert c is not None and c.verdict is ScanVerdict.COMPLIANT
