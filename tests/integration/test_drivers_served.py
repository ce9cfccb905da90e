"""Driver profiles through the real server: ``nfsguard serve`` (gunicorn over TLS on
127.0.0.1) and ``nfsguard review`` (the CLI, as CI pipelines run it) give the same
answer for an object of every profiled driver: allowed or denied, the same patch,
the same warnings, the same denial message.

(Over 400 lines: one served case per profiled driver, on one server fixture.)

The policy directory holds a blanket pin rule (no export filter, the kind that
reaches every driver), a stricter rule for Ceph NFS (``onUnsupportedPin: deny``) and
an operator ``NFSDriverProfile`` (vSphere file volumes) next to the policies.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.integration.conftest import (
    NFSGUARD,
    ServerHandle,
    admission_review,
    post_review,
    start_server,
)
from tests.support import engine_for
from webhook.engine.engine import Engine
from webhook.files.sources import read_policy_sources
from webhook.nfs.options import is_version_option, selected_version

LEGACY = "volume.beta.kubernetes.io/mount-options"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: drivers-served}
spec:
  version: "2026.11.27-1"
  pin: "4.0"
  rules:
  - name: ceph-strict
    match:
      provisioners: [nfs.csi.ceph.com, "*.nfs.csi.ceph.com"]
    action: pin
    onUnsupportedPin: deny
  - name: el7-nodes
    match:
      nodeKernels:
      - family: el7
    action: pin
"""

VSPHERE_PROFILE = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: vsphere-file}
spec:
  description: vSphere CNS file volumes (NFS 4.1 and 3), an operator's own profile.
  persistentVolume:
    match:
      csiDrivers: [csi.vsphere.vmware.com]
      volumeAttributes: {type: "vSphere CNS File Volume"}
    mountOptions:
    - firstOf: [annotation, spec.mountOptions]
  versions: ["3", "4.1"]
"""


def _pv(name: str, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if "annotations" in spec:
        meta["annotations"] = spec.pop("annotations")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": meta,
        "spec": {
            "capacity": {"storage": "5Gi"},
            "accessModes": spec.pop("accessModes", ["ReadWriteMany"]),
            "persistentVolumeReclaimPolicy": "Delete",
            **source,
            **spec,
        },
    }


def _csi(driver: str, handle: str, attrs: dict[str, str]) -> dict[str, Any]:
    return {"csi": {"driver": driver, "volumeHandle": handle, "volumeAttributes": attrs}}


def _sc(name: str, provisioner: str, params: dict[str, str], **rest: Any) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
        "parameters": params,
        "reclaimPolicy": "Delete",
        **rest,
    }


#: (object, operation, outcome the webhook must give). One per driver and case.
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "in-tree",
        _pv(
            "incident",
            {"nfs": {"server": "192.168.100.7", "path": "/data1/k8sdev"}},
            mountOptions=["vers=4.2", "hard"],
        ),
        "CREATE",
        "mutated",
    ),
    (
        "in-tree-legacy-annotation",
        _pv(
            "legacy",
            {"nfs": {"server": "10.0.0.7", "path": "/x"}},
            annotations={LEGACY: "hard,vers=4.1"},
        ),
        "CREATE",
        "mutated",
    ),
    (
        "csi-driver-nfs",
        _pv(
            "pvc-nfs",
            _csi(
                "nfs.csi.k8s.io",
                "10.0.0.5#/exports#pvc-nfs##",
                {"server": "10.0.0.5", "share": "/exports", "mountOptions": "vers=4.1"},
            ),
        ),
        "CREATE",
        "mutated",
    ),
    (
        "csi-driver-nfs-sc",
        _sc(
            "nfs-csi",
            "nfs.csi.k8s.io",
            {"server": "10.0.0.5", "share": "/exports"},
            mountOptions=["nfsvers=4.2"],
        ),
        "CREATE",
        "mutated",
    ),
    (
        "subdir-sc",
        _sc(
            "nfs-client",
            "k8s-sigs.io/nfs-subdir-external-provisioner",
            {"archiveOnDelete": "false"},
        ),
        "CREATE",
        "mutated",
    ),
    (
        "ganesha-sc",
        _sc("ganesha", "example.com/nfs", {"mountOptions": "vers=4.2"}),
        "CREATE",
        "mutated",
    ),
    (
        "longhorn-pv",
        _pv(
            "pvc-lh",
            _csi(
                "driver.longhorn.io",
                "pvc-lh",
                {"numberOfReplicas": "3", "staleReplicaTimeout": "2880"},
            ),
        ),
        "CREATE",
        "mutated",
    ),
    (
        "longhorn-pv-update",
        _pv(
            "pvc-lh",
            _csi(
                "driver.longhorn.io",
                "pvc-lh",
                {"numberOfReplicas": "3", "staleReplicaTimeout": "2880"},
            ),
        ),
        "UPDATE",
        "warned",
    ),
    (
        "longhorn-sc",
        _sc("longhorn", "driver.longhorn.io", {"numberOfReplicas": "3"}),
        "CREATE",
        "mutated",
    ),
    (
        "trident-lone-nfsvers",
        _sc("ontap-nas-plain", "csi.trident.netapp.io", {"backendType": "ontap-nas-economy"}),
        "CREATE",
        "denied",
    ),
    (
        "trident-pv-anf-cannot-take-4.0",
        _pv(
            "pvc-tr",
            _csi(
                "csi.trident.netapp.io",
                "pvc-tr",
                {"backendUUID": "4b2f6f2e", "internalName": "trident_pvc_tr", "protocol": "file"},
            ),
            mountOptions=["nfsvers=4.1", "hard"],
        ),
        "CREATE",
        "warned",
    ),
    (
        "trident-ontap-sc",
        _sc(
            "ontap-nas",
            "csi.trident.netapp.io",
            {"backendType": "ontap-nas"},
            mountOptions=["nfsvers=4.1", "hard"],
        ),
        "CREATE",
        "mutated",
    ),
    (
        "azure-files",
        _pv(
            "pvc-az",
            _csi(
                "file.csi.azure.com",
                "rg#acct#pvc-az###",
                {"protocol": "nfs", "storageAccount": "acct", "shareName": "pvc-az"},
            ),
            mountOptions=["nconnect=4"],
        ),
        "CREATE",
        "warned",
    ),
    (
        "efs",
        _pv(
            "pvc-efs",
            {
                "csi": {
                    "driver": "efs.csi.aws.com",
                    "volumeHandle": "fs-0123456789abcdef0::fsap-0a1b2c3d4e5f6789",
                }
            },
            mountOptions=["tls"],
        ),
        "CREATE",
        "mutated",
    ),
    (
        "filestore",
        _pv(
            "pvc-fs",
            _csi(
                "filestore.csi.storage.gke.io",
                "modeInstance/us-central1-c/pvc-fs/vol1",
                {"ip": "10.117.0.2", "volume": "vol1"},
            ),
        ),
        "CREATE",
        "warned",
    ),
    (
        "democratic-csi",
        _pv(
            "pvc-dem",
            _csi(
                "org.democratic-csi.nfs",
                "pvc-dem",
                {
                    "node_attach_driver": "nfs",
                    "server": "192.168.10.20",
                    "share": "/mnt/tank/pvc-dem",
                },
            ),
        ),
        "CREATE",
        "mutated",
    ),
    (
        "powerscale",
        _pv(
            "k8s-ps",
            _csi(
                "csi-isilon.dellemc.com",
                "k8s-ps=_=_=19=_=_=System",
                {"AzServiceIP": "10.230.24.10", "Path": "/ifs/data/csi/k8s-ps"},
            ),
            mountOptions=["vers=4"],
        ),
        "CREATE",
        "mutated",
    ),
    (
        "ceph-nfs-rook",
        _pv(
            "pvc-ceph",
            _csi(
                "rook-ceph.nfs.csi.ceph.com",
                "0001-0009-rook-ceph-01",
                {"server": "rook-ceph-nfs-my-nfs-a", "share": "/0001-0009", "nfsCluster": "my-nfs"},
            ),
        ),
        "CREATE",
        "denied",
    ),
    (
        "openebs",
        _pv(
            "pvc-oe",
            {"nfs": {"server": "10.96.51.23", "path": "/"}},
            annotations={PROVISIONED_BY: "openebs.io/nfsrwx"},
        ),
        "CREATE",
        "mutated",
    ),
    (
        "portworx-sharedv4-svc",
        _pv(
            "pvc-px",
            _csi(
                "pxd.portworx.com",
                "1088394427417434951",
                {
                    "sharedv4": "true",
                    "sharedv4_svc_type": "ClusterIP",
                    "sharedv4_mount_options": "vers=4.2,actimeo=60",
                },
            ),
        ),
        "CREATE",
        "mutated",
    ),
    (
        "vsphere-operator-profile",
        _pv(
            "pvc-vs",
            _csi("csi.vsphere.vmware.com", "file:53bf6fb7", {"type": "vSphere CNS File Volume"}),
        ),
        "CREATE",
        "warned",
    ),
    (
        "ebs-not-nfs",
        _pv("pvc-ebs", _csi("ebs.csi.aws.com", "vol-0abc", {}), accessModes=["ReadWriteOnce"]),
        "CREATE",
        "ignored",
    ),
]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("policies")
    (d / "10-pin.yaml").write_text(POLICY)
    (d / "20-vsphere-profile.yaml").write_text(VSPHERE_PROFILE)
    return d


@pytest.fixture(scope="module")
def server(policy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server([policy_dir], tmp_path_factory.mktemp("served"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def engine(policy_dir: Path) -> Engine:
    sources = read_policy_sources([str(policy_dir)])
    return engine_for(sources)


def served(server: ServerHandle, obj: dict[str, Any], operation: str) -> dict[str, Any]:
    old = copy.deepcopy(obj) if operation == "UPDATE" else None
    response = post_review(server, admission_review(obj, operation=operation, old=old))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    return answer


def reviewed(policy_dir: Path, obj: dict[str, Any], operation: str, tmp: Path) -> Any:
    manifest = tmp / "object.yaml"
    manifest.write_text(yaml.safe_dump(obj))
    return subprocess.run(
        [
            str(NFSGUARD),
            "review",
            "--policy",
            str(policy_dir),
            "--operation",
            operation,
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("case", "obj", "operation", "outcome"), CASES, ids=[c[0] for c in CASES])
def test_served_and_review_give_the_same_answer(
    case: str,
    obj: dict[str, Any],
    operation: str,
    outcome: str,
    server: ServerHandle,
    policy_dir: Path,
    engine: Engine,
    tmp_path: Path,
) -> None:
    answer = served(server, obj, operation)
    cli = reviewed(policy_dir, obj, operation, tmp_path)
    warnings = answer.get("warnings") or []
    cli_warnings = [
        line.split(": warning: ", 1)[1] for line in cli.stderr.splitlines() if ": warning: " in line
    ]
    assert cli_warnings == warnings, (cli.stderr, warnings)

    if outcome == "denied":
        assert answer["allowed"] is False
        assert cli.returncode == 1, cli.stderr
        message = answer["status"]["message"]
        assert f"denied: {message}" in cli.stderr
        assert cli.stdout.strip() == ""
        if case.startswith("trident"):
            assert "nfsMountOptions" in message
        else:
            assert "onUnsupportedPin: deny" in message
        return

    assert answer["allowed"] is True
    assert cli.returncode == 0, cli.stderr
    admitted = yaml.safe_load(cli.stdout)
    if outcome in ("warned", "ignored"):
        assert "patch" not in answer
        assert admitted == obj
        assert bool(warnings) is (outcome == "warned")
        return

    # mutated: the served patch and the CLI give the same object, pinned.
    assert answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    patched = jsonpatch.apply_patch(copy.deepcopy(obj), patch)
    assert patched == admitted
    assert patched != obj
    after = engine.read(patched)
    assert after is not None
    assert [o for o in after.node_options() if selected_version(o) is not None] == ["nfsvers=4.0"]
    for place in after.places:
        if not place.node_reads:
            assert not any(is_version_option(o) for o in place.options)
    # Reinvocation: served again, the pinned object needs no second patch.
    again = served(server, patched, "CREATE")
    assert again["allowed"] is True and "patch" not in again


def test_every_profiled_driver_is_covered_here(engine: Engine) -> None:
    drivers = set()
    for _, obj, _, outcome in CASES:
        if outcome != "ignored":
            found = engine.read(obj)
            assert found is not None
            drivers.add(found.driver)
    assert drivers == {p.name for p in engine.profiles}
