"""``nfsguard scan`` and ``remediate`` against the real kube-apiserver, no webhook
registered: the state of a cluster before nfsguard.

Objects of every driver shape, and Pods and workloads with inline NFS volumes, are
created straight through the API (nothing admits them), with PVCs bound to them, pods
whose status says ContainerCreating (set through pods/status: there is no kubelet) and
FailedMount Events. Every assertion reads what
the CLI printed or what the apiserver stored.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client as k8s

from tests.e2e.kubecluster import nfs_pv, nfs_storage_class, pv_model, sc_model
from tests.fixtures.samples import csi_volume, nfs_volume, workload

NS = "scan-e2e"
SERVER = "192.168.100.7"  # the incident's server (docs/incident.md); nothing is mounted
LEGACY = "volume.beta.kubernetes.io/mount-options"

POLICY = f"""\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: scan-e2e
spec:
  version: "scan-e2e-1"
  pin: "4.0"
  rules:
  - name: pin-incident
    match:
      exports:
      - server: {SERVER}
    action: pin
  - name: pin-subdir
    match:
      provisioners: ["*nfs-subdir-external-provisioner"]
    action: pin
  - name: pin-longhorn
    match:
      provisioners: [driver.longhorn.io]
    action: pin
  - name: deny-legacy-filer
    match:
      exports:
      - server: 192.0.2.20
    action: deny
  - name: exempt-lab
    match:
      exports:
      - server: 192.0.2.31
    action: exempt
"""

#: name -> verdict every shape must get.
EXPECTED = {
    ("PersistentVolume", "scan-intree"): "fixable",
    ("PersistentVolume", "scan-legacy"): "fixable",
    ("PersistentVolume", "scan-csi"): "fixable",
    ("PersistentVolume", "scan-csi-va"): "not-fixable-in-place",
    ("PersistentVolume", "scan-csi-va-pinned"): "not-fixable-in-place",
    ("PersistentVolume", "scan-subdir"): "fixable",
    ("PersistentVolume", "scan-longhorn"): "not-fixable-in-place",
    ("PersistentVolume", "scan-pinned"): "compliant",
    ("PersistentVolume", "scan-denied"): "denied",
    ("PersistentVolume", "scan-exempt"): "exempt",
    ("PersistentVolume", "scan-uncovered"): "compliant",
    ("StorageClass", "scan-nfs-ssd"): "fixable",
    ("StorageClass", "scan-csi-sc"): "fixable",
    ("StorageClass", "scan-longhorn-sc"): "not-fixable-in-place",
}


M = TypeVar("M")


def model(cls: type[M], d: dict[str, Any]) -> M:
    """A client model from a camelCase manifest (the kubernetes client's from_dict)."""
    m = cls.from_dict(d)  # type: ignore[attr-defined]
    assert m is not None
    return cast(M, m)


def stored(api: k8s.CoreV1Api | k8s.StorageV1Api, obj: Any) -> dict[str, Any]:
    """What the apiserver stored, as plain camelCase JSON."""
    return cast(dict[str, Any], api.api_client.sanitize_for_serialization(obj))


def pv_of(core: k8s.CoreV1Api, name: str) -> dict[str, Any]:
    return stored(core, core.read_persistent_volume(name))


def _pvs() -> list[dict[str, Any]]:
    csi_va = nfs_pv("scan-csi-va", SERVER, "/data1/c", csi=True)
    csi_va["spec"]["csi"]["volumeAttributes"]["mountOptions"] = "vers=4.1"
    csi_va_pinned = nfs_pv("scan-csi-va-pinned", SERVER, "/data1/d", ["nfsvers=4.0"], csi=True)
    csi_va_pinned["spec"]["csi"]["volumeAttributes"]["mountOptions"] = "hard,vers=4.2"
    longhorn = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "scan-longhorn"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "csi": {
                "driver": "driver.longhorn.io",
                "volumeHandle": "scan-longhorn",
                "volumeAttributes": {"share": "true", "nfsOptions": "vers=4.1,hard"},
            },
        },
    }
    subdir = nfs_pv("scan-subdir", SERVER, "/data1/k8sdev/hl/pvc-1", storage_class="scan-nfs-ssd")
    subdir["metadata"]["annotations"] = {
        "pv.kubernetes.io/provisioned-by": "k8s-sigs.io/nfs-subdir-external-provisioner"
    }
    return [
        nfs_pv("scan-intree", SERVER, "/data1/k8sdev/hl", ["hard"], storage_class="scan-nfs-ssd"),
        nfs_pv("scan-legacy", SERVER, "/data1/a", annotations={LEGACY: "hard,vers=4.1"}),
        nfs_pv("scan-csi", SERVER, "/data1/b", ["hard"], csi=True),
        csi_va,
        csi_va_pinned,
        subdir,
        longhorn,
        nfs_pv("scan-pinned", SERVER, "/data1/e", ["nfsvers=4.0"]),
        nfs_pv("scan-denied", "192.0.2.20", "/x"),
        nfs_pv("scan-exempt", "192.0.2.31", "/x"),
        nfs_pv("scan-uncovered", "198.51.100.9", "/export/q"),
    ]


def _scs() -> list[dict[str, Any]]:
    subdir = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "scan-nfs-ssd"},
        "provisioner": "k8s-sigs.io/nfs-subdir-external-provisioner",
    }
    longhorn = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "scan-longhorn-sc"},
        "provisioner": "driver.longhorn.io",
        "parameters": {"nfsOptions": "vers=4.1,hard"},
    }
    return [subdir, nfs_storage_class("scan-csi-sc", SERVER, "/data1/csi"), longhorn]


#: (pod, claim, PV, controller-owned)
PODS = [
    ("app-0", "code-data", "scan-intree", True),
    ("bare-0", "bare-data", "scan-csi", False),
    ("q-0", "q-data", "scan-uncovered", True),
]


def _pod(name: str, claim: str, owned: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if owned:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{name}-rs",
                "uid": "00000000-0000-0000-0000-000000000001",
                "controller": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": "node003",
            "containers": [{"name": "c", "image": "registry.invalid/app:1"}],
            "volumes": [{"name": claim, "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


@pytest.fixture(scope="module")
def cluster_state(api_client: k8s.ApiClient) -> Iterator[None]:
    core, storage = k8s.CoreV1Api(api_client), k8s.StorageV1Api(api_client)
    with contextlib.suppress(k8s.ApiException):
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NS)))
    with contextlib.suppress(k8s.ApiException):  # no controller-manager makes it here
        core.create_namespaced_service_account(
            NS, model(k8s.V1ServiceAccount, {"metadata": {"name": "default"}})
        )
    created_pvs = [pv["metadata"]["name"] for pv in _pvs()]
    created_scs = [sc["metadata"]["name"] for sc in _scs()]
    for pv_obj in _pvs():
        core.create_persistent_volume(pv_model(pv_obj))
    for sc_obj in _scs():
        storage.create_storage_class(sc_model(sc_obj))
    for pod, claim, pv, owned in PODS:
        core.create_namespaced_persistent_volume_claim(
            NS,
            model(
                k8s.V1PersistentVolumeClaim,
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim},
                    "spec": {
                        "accessModes": ["ReadWriteMany"],
                        "resources": {"requests": {"storage": "1Gi"}},
                        "storageClassName": "",
                        "volumeName": pv,
                    },
                },
            ),
        )
        core.create_namespaced_pod(NS, model(k8s.V1Pod, _pod(pod, claim, owned)))
        status = {
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "c",
                        "image": "registry.invalid/app:1",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            }
        }
        core.patch_namespaced_pod_status(pod, NS, status)
        core.create_namespaced_event(
            NS,
            model(
                k8s.CoreV1Event,
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": f"{pod}.failedmount"},
                    "involvedObject": {"kind": "Pod", "namespace": NS, "name": pod},
                    "reason": "FailedMount",
                    "type": "Warning",
                    "count": 50,
                    "message": (
                        "Unable to attach or mount volumes: unmounted volumes=[code-data]: "
                        "timed out waiting for the condition"
                    ),
                    "source": {"component": "kubelet", "host": "node003"},
                },
            ),
        )
    yield
    for pod, claim, _, _ in PODS:
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespaced_pod(pod, NS, grace_period_seconds=0)
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespaced_persistent_volume_claim(claim, NS)
        with contextlib.suppress(k8s.ApiException):
            core.delete_namespaced_event(f"{pod}.failedmount", NS)
    for name in created_pvs:
        with contextlib.suppress(k8s.ApiException):
            core.delete_persistent_volume(name)
    for name in created_scs:
        with contextlib.suppress(k8s.ApiException):
            storage.delete_storage_class(name)


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("scan") / "policy.yaml"
    p.write_text(POLICY)
    return p


def nfsguard(*args: str) -> tuple[int, str, str]:
    from webhook.cli.main import cli

    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def scan_json(kubeconfig: Path, policy: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = nfsguard(
        "scan", "--policy", str(policy), "--kubeconfig", str(kubeconfig), "-o", "json", *extra
    )
    assert code in (0, 1), err
    return code, json.loads(out)


def ours(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (o["kind"], o["name"]): o for o in report["objects"] if (o["kind"], o["name"]) in EXPECTED
    }


def test_scan_reports_every_shape_and_the_pods_it_strands(
    cluster_state: None, kubeconfig: Path, policy_file: Path, tmp_path: Path
) -> None:
    suggestion = tmp_path / "suggested.yaml"
    # a page size of 2 makes the lists page (limit/continue) many times
    code, report = scan_json(
        kubeconfig, policy_file, "--page-size", "2", "--suggest-policy", str(suggestion)
    )
    assert code == 1
    found = ours(report)
    assert {k: o["verdict"] for k, o in found.items()} == EXPECTED
    for o in report["objects"]:
        assert set(o) >= {"kind", "name", "verdict", "rule", "export", "version", "patch", "pods"}
    assert sum(report["summary"].values()) == len(report["objects"])

    intree = found[("PersistentVolume", "scan-intree")]
    assert intree["rule"] == "pin-incident"
    assert intree["export"] == f"{SERVER}:/data1/k8sdev/hl"
    assert intree["version"] == "negotiated (starts at 4.2)"
    assert intree["patch"] == [
        {"op": "replace", "path": "/spec/mountOptions", "value": ["hard", "nfsvers=4.0"]}
    ]
    assert [
        (p["namespace"], p["name"], p["node"], p["phase"], p["stranded"]) for p in intree["pods"]
    ] == [(NS, "app-0", "node003", "Pending", True)]
    assert intree["claim"] == {"namespace": NS, "name": "code-data"}
    assert found[("PersistentVolume", "scan-legacy")]["claim"] is None
    legacy = found[("PersistentVolume", "scan-legacy")]
    assert legacy["patch"] == [
        {
            "op": "replace",
            "path": "/metadata/annotations/volume.beta.kubernetes.io~1mount-options",
            "value": "hard,nfsvers=4.0",
        }
    ]
    for name in ("scan-csi-va", "scan-csi-va-pinned", "scan-longhorn"):
        o = found[("PersistentVolume", name)]
        assert o["patch"] is None and "cannot change after creation" in o["reason"]
        assert o["wayOut"]
    assert "Retain" in found[("PersistentVolume", "scan-csi-va")]["wayOut"]
    assert found[("StorageClass", "scan-nfs-ssd")]["patch"] == [
        {"op": "add", "path": "/mountOptions", "value": ["nfsvers=4.0"]}
    ]
    assert found[("PersistentVolume", "scan-denied")]["rule"] == "deny-legacy-filer"
    # stranded on an export no rule covers: a lint-clean suggested rule with the evidence
    uncovered = found[("PersistentVolume", "scan-uncovered")]
    assert uncovered["covered"] is False and uncovered["pods"][0]["stranded"] is True
    policy = yaml.safe_load(suggestion.read_text())
    (rule,) = policy["spec"]["rules"]
    assert rule["match"]["exports"] == [{"server": "198.51.100.9", "path": "/export/q"}]
    assert "node003" in rule["description"] and f"{NS}/q-0" in rule["description"]
    code, _, err = nfsguard("policy", "lint", str(suggestion))
    assert code == 0, err

    # -o yaml is the same document; the table groups by verdict with a summary line
    code, out, _ = nfsguard(
        "scan", "--policy", str(policy_file), "--kubeconfig", str(kubeconfig), "-o", "yaml"
    )
    assert ours(yaml.safe_load(out)) == found
    code, out, _ = nfsguard("scan", "--policy", str(policy_file), "--kubeconfig", str(kubeconfig))
    assert out.index("NOT-FIXABLE-IN-PLACE") < out.index("FIXABLE (") < out.index("COMPLIANT")
    assert out.strip().splitlines()[-1].startswith("summary: ")


def test_scan_lists_pods_and_workload_templates(
    cluster_state: None, api_client: k8s.ApiClient, kubeconfig: Path, policy_file: Path
) -> None:
    """Pods and every workload kind with inline NFS volumes, stored before any webhook:
    scan reads them from the live cluster (paged), each with its namespace and deciding
    volume; pods and workloads without NFS volumes are not listed."""
    core, apps, batch = (
        k8s.CoreV1Api(api_client),
        k8s.AppsV1Api(api_client),
        k8s.BatchV1Api(api_client),
    )
    create: dict[str, Callable[..., Any]] = {
        "Pod": core.create_namespaced_pod,
        "ReplicationController": core.create_namespaced_replication_controller,
        "Deployment": apps.create_namespaced_deployment,
        "ReplicaSet": apps.create_namespaced_replica_set,
        "StatefulSet": apps.create_namespaced_stateful_set,
        "DaemonSet": apps.create_namespaced_daemon_set,
        "Job": batch.create_namespaced_job,
        "CronJob": batch.create_namespaced_cron_job,
    }
    delete: dict[str, Callable[..., Any]] = {
        "Pod": core.delete_namespaced_pod,
        "ReplicationController": core.delete_namespaced_replication_controller,
        "Deployment": apps.delete_namespaced_deployment,
        "ReplicaSet": apps.delete_namespaced_replica_set,
        "StatefulSet": apps.delete_namespaced_stateful_set,
        "DaemonSet": apps.delete_namespaced_daemon_set,
        "Job": batch.delete_namespaced_job,
        "CronJob": batch.delete_namespaced_cron_job,
    }
    expected: dict[tuple[str, str], tuple[str, str, str]] = {}  # -> (verdict, rule, volume)
    objects = []
    for kind in create:
        low = kind.lower()
        inline = workload(
            kind,
            [{"name": "tmp", "emptyDir": {}}, nfs_volume("data", SERVER, "/data1/w")],
            name=f"w-nfs-{low}",
            namespace=NS,
        )
        expected[(kind, inline["metadata"]["name"])] = ("denied", "pin-incident", "data")
        csi = workload(
            kind,
            [csi_volume("shared", server=SERVER, share="/data1", mount_options="hard")],
            name=f"w-csi-{low}",
            namespace=NS,
        )
        expected[(kind, csi["metadata"]["name"])] = (
            "not-fixable-in-place",
            "pin-incident",
            "shared",
        )
        exempt = workload(
            kind, [nfs_volume("lab", "192.0.2.31", "/lab")], name=f"w-lab-{low}", namespace=NS
        )
        expected[(kind, exempt["metadata"]["name"])] = ("exempt", "exempt-lab", "lab")
        plain = workload(
            kind, [{"name": "tmp", "emptyDir": {}}], name=f"w-plain-{low}", namespace=NS
        )
        objects += [inline, csi, exempt, plain]
    try:
        for obj in objects:
            create[obj["kind"]](NS, obj)  # plain JSON bodies
        code, report = scan_json(kubeconfig, policy_file, "--page-size", "3")
        assert code == 1
        rows = {(o["kind"], o["name"]): o for o in report["objects"] if o.get("namespace") == NS}
        got = {k: (o["verdict"], o["rule"], o["volume"]) for k, o in rows.items()}
        assert got == expected
        for o in rows.values():
            assert o["patch"] is None  # never patched in place: the manifest is the fix
        deploy = rows[("Deployment", "w-csi-deployment")]
        assert "nfsvers=4.0" in deploy["wayOut"] and "volume shared" in deploy["wayOut"]
        denied = rows[("CronJob", "w-nfs-cronjob")]
        assert "kind: PersistentVolume" in denied["reason"] and f"-n {NS} " in denied["reason"]
        assert [v["name"] for v in denied["volumes"]] == ["data"]
    finally:
        for obj in objects:
            with contextlib.suppress(k8s.ApiException):
                delete[obj["kind"]](obj["metadata"]["name"], NS)


def test_policies_from_the_configmap_the_install_ships(
    cluster_state: None, kubeconfig: Path, policy_file: Path, core_v1: k8s.CoreV1Api
) -> None:
    cm = {"metadata": {"name": "scan-policies"}, "data": {"site.yaml": POLICY}}
    core_v1.create_namespaced_config_map(NS, model(k8s.V1ConfigMap, cm))
    try:
        _, from_file = scan_json(kubeconfig, policy_file)
        code, out, err = nfsguard(
            "scan",
            "--policy-configmap",
            f"{NS}/scan-policies",
            "--kubeconfig",
            str(kubeconfig),
            "-o",
            "json",
        )
        assert code == 1, err
        assert ours(json.loads(out)) == ours(from_file)
        code, _, err = nfsguard(
            "scan", "--policy-configmap", f"{NS}/missing", "--kubeconfig", str(kubeconfig)
        )
        assert code == 2 and err.strip() == f"nfsguard: ConfigMap {NS}/missing not found"
    finally:
        core_v1.delete_namespaced_config_map("scan-policies", NS)


def test_remediate_applies_in_one_pass_records_and_is_idempotent(
    cluster_state: None,
    kubeconfig: Path,
    policy_file: Path,
    tmp_path: Path,
    core_v1: k8s.CoreV1Api,
    storage_v1: k8s.StorageV1Api,
) -> None:
    kc, pol = str(kubeconfig), str(policy_file)
    code, out, _ = nfsguard("remediate", "--policy", pol, "--kubeconfig", kc, "-o", "json")
    plan = ours(json.loads(out))
    assert code == 1
    assert {k for k, o in plan.items() if o["action"] == "patch"} == {
        k for k, v in EXPECTED.items() if v == "fixable"
    }
    # a plan changes nothing
    assert pv_of(core_v1, "scan-intree")["spec"]["mountOptions"] == ["hard"]

    log = tmp_path / "audit.jsonl"
    code, out, err = nfsguard(
        "remediate",
        "--policy",
        pol,
        "--kubeconfig",
        kc,
        "-o",
        "json",
        "--apply",
        "--audit-log",
        str(log),
        "--actor",
        "alice@example.test",
        "--restart-stranded",
    )
    done = ours(json.loads(out))
    fixable = {k for k, v in EXPECTED.items() if v == "fixable"}
    assert {k for k, o in done.items() if o.get("result") == "applied"} == fixable
    assert code == 1  # the not-fixable and denied ones are still at risk
    assert pv_of(core_v1, "scan-intree")["spec"]["mountOptions"] == ["hard", "nfsvers=4.0"]
    legacy = pv_of(core_v1, "scan-legacy")
    assert legacy["metadata"]["annotations"][LEGACY] == "hard,nfsvers=4.0"
    assert "mountOptions" not in legacy["spec"]
    assert pv_of(core_v1, "scan-csi")["spec"]["mountOptions"] == ["hard", "nfsvers=4.0"]
    sc = stored(storage_v1, storage_v1.read_storage_class("scan-nfs-ssd"))
    assert sc["mountOptions"] == ["nfsvers=4.0"]
    # the immutable ones are untouched
    va = pv_of(core_v1, "scan-csi-va")["spec"]
    assert "mountOptions" not in va and va["csi"]["volumeAttributes"]["mountOptions"] == "vers=4.1"

    # stranded pods: the owned one is deleted, the bare one never
    app = next(p for p in done[("PersistentVolume", "scan-intree")]["pods"] if p["name"] == "app-0")
    assert app["restart"].startswith("deleted")
    bare = next(p for p in done[("PersistentVolume", "scan-csi")]["pods"] if p["name"] == "bare-0")
    assert bare["restart"].startswith("bare pod")
    assert (
        "deletionTimestamp"
        not in stored(core_v1, core_v1.read_namespaced_pod("bare-0", NS))["metadata"]
    )
    with contextlib.suppress(k8s.ApiException):  # gone, or Terminating (no kubelet to finish)
        app_pod = stored(core_v1, core_v1.read_namespaced_pod("app-0", NS))
        assert "deletionTimestamp" in app_pod["metadata"]
    assert "node003" in err and "reboot" in err

    # every change on record, in a chain audit verify accepts
    records = [json.loads(line) for line in log.read_text().splitlines()]
    decisions = [r for r in records if r["type"] == "decision"]
    assert {(r["request"]["kind"], r["request"]["name"]) for r in decisions} == fixable
    for r in decisions:
        assert r["user"]["username"] == "alice@example.test"
        assert r["request"]["operation"] == "UPDATE"
        assert r["policy"]["version"] == "scan-e2e-1" and r["rule"] and r["patch"]
    code, _, err = nfsguard("audit", "verify", "--allow-unsigned", str(log))  # unsigned: else 4
    assert code == 0, err

    # a second run changes nothing
    rv_before = {
        n: pv_of(core_v1, n)["metadata"]["resourceVersion"]
        for kind, n in fixable
        if kind == "PersistentVolume"
    }
    code, out, _ = nfsguard(
        "remediate",
        "--policy",
        pol,
        "--kubeconfig",
        kc,
        "-o",
        "json",
        "--apply",
        "--audit-log",
        str(log),
        "--actor",
        "alice@example.test",
    )
    again = ours(json.loads(out))
    assert not [k for k, o in again.items() if o.get("result") == "applied"]
    assert {k for k, o in again.items() if o["verdict"] == "fixable"} == set()
    for n, rv in rv_before.items():
        assert pv_of(core_v1, n)["metadata"]["resourceVersion"] == rv
    assert [json.loads(x)["type"] for x in log.read_text().splitlines()].count("decision") == len(
        fixable
    )
