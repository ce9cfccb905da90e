"""The install, proven on a real node: the shipped manifests (`kubectl apply -k manifests/`)
with the locally built image, then the admission contract through the real Service and
the behaviour of two replicas under disruption.

Every wait is bounded; durations and review counts are reported in the terminal summary,
never asserted on. The tests run in file order on one install (each leaves two Ready
replicas behind).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.e2e.kubecluster import (
    PIN,
    nfs_pv,
    nfs_storage_class,
    pv_model,
    sc_model,
    version_options,
)
from tests.image.images import BuiltImage
from tests.node.cluster import NodeCluster
from tests.node.workload import (
    NAMESPACE,
    POLICY,
    Install,
    ReviewLoad,
    name_of,
    rendered_manifests,
    review_pod,
)

REPO = Path(__file__).resolve().parents[2]
NFSGUARD = REPO / ".venv" / "bin" / "nfsguard"


@pytest.fixture(scope="module")
def install(
    node: NodeCluster,
    node_image: BuiltImage,
    report: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Install]:
    docs = rendered_manifests(node, node_image.ref, POLICY.read_text())
    inst = Install(node, docs, tmp_path_factory.mktemp("install") / "nfsguard.yaml").apply()
    t = inst.timings
    report.append(
        f"node: install {t['install']:.1f} s (certs Job done {t['certs-job']:.1f}, 2 replicas "
        f"Ready {t['replicas']:.1f}, webhook live through the Service {t['registered']:.1f})"
    )
    yield inst
    report.append(f"node: uninstall {inst.uninstall():.1f} s (namespace gone)")


def test_certs_job_completes_and_both_replicas_serve_hardened(install: Install) -> None:
    pods = install.ready_pods()
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec is not None and pod.status is not None
        (c,) = pod.spec.containers
        assert c.image_pull_policy == "Never"
        sc = c.security_context
        assert sc is not None and sc.read_only_root_filesystem and sc.run_as_non_root
        assert sc.capabilities is not None and sc.capabilities.drop == ["ALL"]
        (cs,) = pod.status.container_statuses or []
        assert cs.ready and cs.restart_count == 0, cs
    # What the Job made: the serving pair for the Service name and the audit signing key.
    assert b"BEGIN CERTIFICATE" in install.secret("nfsguard-tls", "tls.crt")
    assert b"PUBLIC KEY" in install.secret("nfsguard-audit-key", "audit.pub")


def test_pvs_and_storage_classes_are_pinned_through_the_apiserver(install: Install) -> None:
    core, storage = install.core, k8s.StorageV1Api(install.node.api)
    pv = core.create_persistent_volume(
        pv_model(nfs_pv("node-pin-pv", "192.0.2.10", "/exports/a", ["nfsvers=4.1", "hard"]))
    )
    sc = storage.create_storage_class(
        sc_model(nfs_storage_class("node-pin-sc", "192.0.2.10", "/exports/b", ["vers=4.2"]))
    )
    try:
        assert pv.spec is not None and version_options(pv.spec.mount_options) == [PIN]
        assert "hard" in (pv.spec.mount_options or [])
        assert version_options(sc.mount_options) == [PIN]
        # Stored as admitted: read back through the apiserver.
        stored = core.read_persistent_volume("node-pin-pv")
        assert stored.spec is not None and version_options(stored.spec.mount_options) == [PIN]
        # A denied export is refused with the rule named.
        with pytest.raises(k8s.ApiException) as denied:
            core.create_persistent_volume(
                pv_model(nfs_pv("node-deny-pv", "192.0.2.20", "/x", ["nfsvers=4.1"]))
            )
        assert denied.value.status in (400, 403) and "deny-legacy-filer" in str(denied.value.body)
    finally:
        core.delete_persistent_volume("node-pin-pv")
        storage.delete_storage_class("node-pin-sc")


#: The one way a review fails when a replica is killed outright (measured: 1 of ~450-550
#: reviews per force delete here). With --grace-period=0 --force the kubelet skips the
#: preStop hook and sends SIGTERM at once; the worker's graceful stop closes its idle
#: kept-alive connections immediately (webhook/server/worker.py), and a request the
#: apiserver was writing on one of them at that instant fails: Go does not retry a POST
#: on a reused connection the server closed, and the webhook client does not retry that
#: error. Every other failure (a refused connect to the dead pod's IP, a timeout) would
#: mean the Service or kube-proxy still sent reviews to it, and fails this test.
IDLE_CLOSE_RACE = "server closed idle connection"


def test_a_replica_killed_while_reviews_run_loses_only_the_idle_close_race(
    install: Install, report: list[str]
) -> None:
    victim = name_of(install.ready_pods()[0])
    with ReviewLoad(install.node) as load:
        load.wait_for(20)
        t0 = time.monotonic()
        install.node.kubectl(
            "delete", "pod", victim, "-n", NAMESPACE, "--grace-period=0", "--force"
        )
        back = install.wait_replicas("a replacement replica Ready", exclude=frozenset({victim}))
        load.wait_for(20)
        total = time.monotonic() - t0
    report.append(
        f"node: force-deleted replica: {load.ok + load.failed} reviews, {load.failed} failed "
        f"({IDLE_CLOSE_RACE!r}: {sum(IDLE_CLOSE_RACE in e for e in load.errors)}); "
        f"replacement Ready {back:.1f} s after the delete (load ran {total:.1f} s)"
    )
    assert load.ok >= 40
    # The other replica answered throughout: at most the connections the victim closed
    # while a request was on its way (one per apiserver connection to it) failed.
    assert load.failed <= 4, load.errors
    assert all(IDLE_CLOSE_RACE in e for e in load.errors), load.errors


def test_rollout_restart_under_load_costs_no_review(install: Install, report: list[str]) -> None:
    before = {name_of(p) for p in install.ready_pods()}
    with ReviewLoad(install.node) as load:
        load.wait_for(20)
        t0 = time.monotonic()
        install.node.kubectl("rollout", "restart", "deployment/nfsguard", "-n", NAMESPACE)
        install.node.kubectl(
            "rollout",
            "status",
            "deployment/nfsguard",
            "-n",
            NAMESPACE,
            "--timeout=240s",
            timeout=260,
        )
        install.wait_replicas("two restarted replicas Ready", exclude=frozenset(before))
        took = time.monotonic() - t0
        load.wait_for(20)
    report.append(
        f"node: rollout restart: {load.ok + load.failed} reviews, {load.failed} failed; "
        f"rollout complete in {took:.1f} s"
    )
    assert load.failed == 0, load.errors
    assert not before & {name_of(p) for p in install.ready_pods()}


def test_the_pdb_blocks_evicting_the_last_ready_replica(install: Install) -> None:
    core = install.core
    first, last = (name_of(p) for p in install.ready_pods())

    def evict(name: str) -> None:
        core.create_namespaced_pod_eviction(
            name,
            NAMESPACE,
            k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=name, namespace=NAMESPACE)),
        )

    evict(first)  # allowed: the other replica is Ready (minAvailable: 1)
    with pytest.raises(k8s.ApiException) as refused:
        evict(last)
    assert refused.value.status == 429, refused.value
    assert "disruption budget" in str(refused.value.body)
    still = core.read_namespaced_pod(last, NAMESPACE)
    assert still.metadata is not None and still.metadata.deletion_timestamp is None
    install.wait_replicas("the evicted replica replaced", exclude=frozenset({first}))


HOT_SERVER = "192.0.2.77"
HOT_POLICY = f"""\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: node-hot
spec:
  version: "node-hot-1"
  pin: "4.0"
  rules:
  - name: pin-hot-filer
    description: added while both replicas run; no restart
    match:
      exports:
      - server: {HOT_SERVER}
    action: pin
"""


def test_a_policy_change_in_the_configmap_reaches_both_replicas(
    install: Install, report: list[str]
) -> None:
    pods = install.ready_pods()
    ca = install.secret("nfsguard-tls", "ca-bundle.crt")
    pv = nfs_pv("node-hot-pv", HOT_SERVER, "/data", ["nfsvers=4.1"])
    ips = [str(p.status.pod_ip) for p in pods if p.status is not None]
    assert len(ips) == 2
    for ip in ips:  # before: not a rule of the installed policy
        assert version_options(review_pod(ip, ca, pv)["object"]["spec"]["mountOptions"]) == [
            "nfsvers=4.1"
        ]
    cm = install.core.read_namespaced_config_map("nfsguard-policies", NAMESPACE)
    cm.data = {**(cm.data or {}), "hot.yaml": HOT_POLICY}
    install.core.replace_namespaced_config_map("nfsguard-policies", NAMESPACE, cm)
    t0 = time.monotonic()
    seen: dict[str, float] = {}

    def both_pin() -> bool:
        for ip in ips:
            if ip not in seen:
                got = review_pod(ip, ca, pv)["object"]["spec"]["mountOptions"]
                if version_options(got) == [PIN]:
                    seen[ip] = time.monotonic() - t0
        return len(seen) == 2

    install.node.wait("both replicas to pin the new server", both_pin, 180)
    # And through the apiserver and the Service.
    admitted = install.core.create_persistent_volume(pv_model(pv), dry_run="All")
    assert admitted.spec is not None and version_options(admitted.spec.mount_options) == [PIN]
    assert {name_of(p) for p in install.ready_pods()} == {name_of(p) for p in pods}
    report.append(
        "node: ConfigMap change seen by the replicas after "
        + ", ".join(f"{s:.1f} s" for s in sorted(seen.values()))
        + " (kubelet syncFrequency 10 s)"
    )


def test_the_audit_records_of_both_replicas_verify(install: Install, tmp_path: Path) -> None:
    pub = tmp_path / "audit.pub"
    pub.write_bytes(install.secret("nfsguard-audit-key", "audit.pub"))
    pods = install.ready_pods()
    assert len(pods) == 2
    for pod in pods:
        assert pod.metadata is not None and pod.metadata.uid
        log = (
            install.node.pod_dir(pod.metadata.uid)
            / "volumes"
            / "kubernetes.io~empty-dir"
            / "audit"
            / "audit.log"
        )
        # A live log: the writer signs a checkpoint at least every 60 s.
        install.node.wait(
            f"a signed checkpoint in {name_of(pod)}'s audit log",
            lambda log=log: log.exists() and '"checkpoint"' in log.read_text(),  # type: ignore[misc]
            150,
        )
        # The collected copy first (stdout, as `kubectl logs` gives it), then the file.
        collected = tmp_path / f"{name_of(pod)}.stdout"
        collected.write_text(install.node.kubectl("logs", "-n", NAMESPACE, name_of(pod)))
        copy = tmp_path / f"{name_of(pod)}.audit.log"
        copy.write_bytes(log.read_bytes())
        records = [yaml.safe_load(line) for line in copy.read_text().splitlines() if line]
        assert any(r.get("type") == "decision" for r in records), name_of(pod)
        done = subprocess.run(
            [
                str(NFSGUARD),
                "audit",
                "verify",
                str(copy),
                "--public-key",
                str(pub),
                "--anchors",
                str(collected),
                "--require-checkpoint-within",
                "1000",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (name_of(pod), done.stdout, done.stderr)
        assert done.stdout.startswith("OK"), done.stdout
