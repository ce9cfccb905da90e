"""The install, proven on a real node: `helm install charts/nfsguard` with the image the
project builds (imported into containerd, imagePullPolicy Never), then the admission
contract through the real Service, two replicas under disruption, a hot policy change,
the audit trail, and `helm uninstall`.

Every wait is bounded; durations and review counts are reported in the terminal summary,
never asserted on. The tests run in file order on one install (each leaves two Ready
replicas behind; the last one uninstalls).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.chart.helm import helm_binary
from tests.e2e.kubecluster import (
    PIN,
    nfs_pv,
    nfs_storage_class,
    pv_model,
    sc_model,
    version_options,
)
from tests.image.images import BuiltImage
from tests.node.cluster import BRIDGE, NodeCluster
from tests.node.workload import (
    NAMESPACE,
    RELEASE,
    SELECTOR,
    WEBHOOK,
    Install,
    ReviewLoad,
    name_of,
    policy_file_value,
    review_pod,
)
from webhook.audit.chain_file import slot_chains

REPO = Path(__file__).resolve().parents[2]
NFSGUARD = REPO / ".venv" / "bin" / "nfsguard"


@pytest.fixture(scope="module")
def install(node: NodeCluster, node_image: BuiltImage, report: list[str]) -> Iterator[Install]:
    inst = Install(node, helm_binary(), node_image.ref)
    try:
        inst.install()
        t = inst.timings
        report.append(
            f"node: helm install {t['install']:.1f} s (helm {t['helm']:.1f}, certs Job done "
            f"{t['certs-job']:.1f}, 2 replicas Ready {t['replicas']:.1f}, webhook live through "
            f"the Service {t['registered']:.1f})"
        )
        yield inst
    finally:
        if inst.installed:  # the uninstall test did not get to it
            inst.uninstall()
        inst.delete_namespace()


def test_certs_job_completes_and_both_replicas_serve_hardened(
    install: Install, node_image: BuiltImage
) -> None:
    job = k8s.BatchV1Api(install.node.api).read_namespaced_job("nfsguard-certs-init-1", NAMESPACE)
    assert job.status is not None and job.status.succeeded == 1
    pods = install.ready_pods()
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec is not None and pod.status is not None
        (c,) = pod.spec.containers
        assert c.image == node_image.ref and c.image_pull_policy == "Never"
        sc = c.security_context
        assert sc is not None and sc.read_only_root_filesystem and sc.run_as_non_root
        assert sc.capabilities is not None and sc.capabilities.drop == ["ALL"]
        (cs,) = pod.status.container_statuses or []
        assert cs.ready and cs.restart_count == 0, cs
    # What the Job made: the serving pair for the Service name and the audit signing key.
    assert b"BEGIN CERTIFICATE" in install.secret("nfsguard-tls", "tls.crt")
    assert b"PUBLIC KEY" in install.secret("nfsguard-audit-key", "audit.pub")


def test_pvs_and_storage_classes_are_pinned_through_the_service(install: Install) -> None:
    node, core = install.node, install.core
    # The apiserver calls the webhook by its Service, whose ClusterIP is routed to the
    # node's own bridge (kube-proxy's DNAT to a replica's pod IP there): never off the host.
    mwc = k8s.AdmissionregistrationV1Api(node.api).read_mutating_webhook_configuration(WEBHOOK)
    for wh in mwc.webhooks or []:
        assert wh.client_config.url is None
        svc_ref = wh.client_config.service
        assert svc_ref is not None
        assert (svc_ref.namespace, svc_ref.name, svc_ref.port) == (NAMESPACE, RELEASE, 443)
    svc = core.read_namespaced_service(RELEASE, NAMESPACE)
    assert svc.spec is not None and svc.spec.cluster_ip
    route = subprocess.run(
        ["ip", "-o", "route", "get", svc.spec.cluster_ip],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f" dev {BRIDGE} " in route, route
    discovery = k8s.DiscoveryV1Api(node.api)

    def endpoint_ips() -> set[str]:
        slices = discovery.list_namespaced_endpoint_slice(
            NAMESPACE, label_selector=f"kubernetes.io/service-name={RELEASE}"
        )
        return {a for s in slices.items for e in s.endpoints or [] for a in e.addresses}

    pod_ips = {str(p.status.pod_ip) for p in install.ready_pods() if p.status is not None}
    assert len(pod_ips) == 2
    # The EndpointSlice controller may trail the pods' Ready condition by a moment.
    node.wait(
        "the Service's endpoints to be the two replicas", lambda: endpoint_ips() == pod_ips, 30
    )

    storage = k8s.StorageV1Api(node.api)
    pv = core.create_persistent_volume(
        pv_model(nfs_pv("node-pin-pv", "192.0.2.10", "/exports/a", ["nfsvers=4.1", "hard"]))
    )
    try:
        sc = storage.create_storage_class(
            sc_model(nfs_storage_class("node-pin-sc", "192.0.2.10", "/exports/b", ["vers=4.2"]))
        )
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
        assert denied.value.status == 403 and "deny-legacy-filer" in str(denied.value.body)
    finally:
        core.delete_persistent_volume("node-pin-pv")
        storage.delete_storage_class("node-pin-sc")


def test_a_replica_force_deleted_while_reviews_run_costs_no_review(
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
        f"node: force-deleted replica: {load.ok + load.failed} reviews, {load.failed} failed; "
        f"replacement Ready {back:.1f} s after the delete (load ran {total:.1f} s)"
    )
    assert load.ok >= 40
    # The other replica answered throughout, and the killed one finished what it had.
    assert load.failed == 0, load.errors


def test_rollout_restart_under_load_costs_no_review(install: Install, report: list[str]) -> None:
    before = {name_of(p) for p in install.ready_pods()}
    with ReviewLoad(install.node) as load:
        load.wait_for(20)
        t0 = time.monotonic()
        install.node.kubectl("rollout", "restart", f"deployment/{RELEASE}", "-n", NAMESPACE)
        install.node.kubectl(
            "rollout",
            "status",
            f"deployment/{RELEASE}",
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
    description: added by helm upgrade while both replicas run; no restart
    match:
      exports:
      - server: {HOT_SERVER}
    action: pin
"""


def test_a_site_policy_added_by_helm_upgrade_reaches_both_replicas(
    install: Install, report: list[str], tmp_path: Path
) -> None:
    pods = install.ready_pods()
    ca = install.secret("nfsguard-tls", "ca-bundle.crt")
    pv = nfs_pv("node-hot-pv", HOT_SERVER, "/data", ["nfsvers=4.1"])
    ips = [str(p.status.pod_ip) for p in pods if p.status is not None]
    assert len(ips) == 2
    for ip in ips:  # before: not a rule of the installed policies
        assert version_options(review_pod(ip, ca, pv)["object"]["spec"]["mountOptions"]) == [
            "nfsvers=4.1"
        ]
    hot = tmp_path / "hot.yaml"
    hot.write_text(HOT_POLICY)
    t0 = time.monotonic()
    install.upgrade(*policy_file_value("hot.yaml", hot))
    upgraded = time.monotonic() - t0
    cm = install.core.read_namespaced_config_map(f"{RELEASE}-policies", NAMESPACE)
    assert "hot.yaml" in (cm.data or {})
    t0 = time.monotonic()  # from the ConfigMap written to each replica serving it
    seen: dict[str, float] = {}

    def both_pin() -> bool:
        for ip in ips:
            if ip not in seen:
                got = review_pod(ip, ca, pv)["object"]["spec"]["mountOptions"]
                if version_options(got) == [PIN]:
                    seen[ip] = time.monotonic() - t0
        return len(seen) == 2

    install.node.wait("both replicas to pin the new server", both_pin, 180)
    job = install.wait_certs_job(install.revision)  # the upgrade's own certs Job
    # And through the apiserver and the Service.
    admitted = install.core.create_persistent_volume(pv_model(pv), dry_run="All")
    assert admitted.spec is not None and version_options(admitted.spec.mount_options) == [PIN]
    # The same pods, never restarted: the kubelet updated the ConfigMap volume in place.
    now = install.ready_pods()
    assert {name_of(p) for p in now} == {name_of(p) for p in pods}
    for p in now:
        assert p.status is not None
        assert all(cs.restart_count == 0 for cs in p.status.container_statuses or [])
    report.append(
        f"node: helm upgrade with a site policy {upgraded:.1f} s; the new policy served by "
        f"the replicas after "
        + ", ".join(f"{s:.1f} s" for s in sorted(seen.values()))
        + f" (kubelet syncFrequency 10 s); revision {install.revision}'s certs Job done "
        f"{job:.1f} s later"
    )


def _last_record(log: Path) -> dict[str, object]:
    lines = [line for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    return dict(json.loads(lines[-1])) if lines else {}


def _chains_signed(audit_dir: Path) -> bool:
    """Some chain holds records, and every chain that does ends in a checkpoint."""
    heads = [
        _last_record(Path(files[-1])) for _live, files in slot_chains(str(audit_dir / "audit.log"))
    ]
    written = [head for head in heads if head]
    return bool(written) and all(head.get("type") == "checkpoint" for head in written)


def test_the_audit_records_of_both_replicas_verify(
    install: Install, tmp_path: Path, report: list[str]
) -> None:
    pub = tmp_path / "audit.pub"
    pub.write_bytes(install.secret("nfsguard-audit-key", "audit.pub"))
    ca = install.secret("nfsguard-tls", "ca-bundle.crt")
    pods = install.ready_pods()
    assert len(pods) == 2
    for pod in pods:  # a decision in each replica's log, whatever the Service chose
        assert pod.status is not None
        review_pod(str(pod.status.pod_ip), ca, nfs_pv("node-audit-pv", "192.0.2.10", "/exports/c"))
    t0 = time.monotonic()
    for pod in pods:
        assert pod.metadata is not None and pod.metadata.uid
        audit_dir = (
            install.node.pod_dir(pod.metadata.uid) / "volumes" / "kubernetes.io~empty-dir" / "audit"
        )
        # One chain per worker process (docs/audit.md, "Layout"). Each writer signs its
        # head at least every 60 s: wait until every chain that holds records ends in
        # such a checkpoint, so that the whole log must be proven (no unanchored tail).
        install.node.wait(
            f"a signed checkpoint at the head of each of {name_of(pod)}'s audit chains",
            lambda audit_dir=audit_dir: _chains_signed(audit_dir),  # type: ignore[misc]
            150,
        )
        # The collected copy (stdout, as `kubectl logs` gives it) and the files themselves.
        collected = tmp_path / f"{name_of(pod)}.stdout"
        collected.write_text(install.node.kubectl("logs", "-n", NAMESPACE, name_of(pod)))
        copy = tmp_path / f"{name_of(pod)}.audit"
        shutil.copytree(audit_dir, copy)
        records = [
            json.loads(line)
            for name in copy.glob("audit*")
            for line in name.read_text().splitlines()
            if line
        ]
        assert any(r.get("type") == "decision" for r in records), name_of(pod)
        done = subprocess.run(
            [
                str(NFSGUARD),
                "audit",
                "verify",
                str(copy),  # every chain in the directory
                "--public-key",
                str(pub),
                "--anchors",
                str(collected),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (name_of(pod), done.stdout, done.stderr)
        lines = done.stdout.splitlines()
        assert lines and all(line.startswith("OK") or ": OK: " in line for line in lines), lines
        assert "signature" in done.stdout and "anchored" in done.stdout, done.stdout
    waited = time.monotonic() - t0
    report.append(f"node: audit logs of both replicas verified (signed head after {waited:.0f} s)")


def test_helm_uninstall_leaves_no_webhook_configuration(
    install: Install, report: list[str]
) -> None:
    api = install.node.api
    took = install.uninstall()
    # The pre-delete hook deleted the configuration the server registered itself.
    names = [
        m.metadata.name
        for m in k8s.AdmissionregistrationV1Api(api).list_mutating_webhook_configuration().items
        if m.metadata is not None
    ]
    assert names == []
    # Nothing of the release is left anywhere, cluster-scoped objects included.
    instance = f"app.kubernetes.io/instance={RELEASE}"
    rbac = k8s.RbacAuthorizationV1Api(api)
    assert rbac.list_cluster_role(label_selector=instance).items == []
    assert rbac.list_cluster_role_binding(label_selector=instance).items == []
    core, apps, batch = install.core, k8s.AppsV1Api(api), k8s.BatchV1Api(api)
    assert apps.list_namespaced_deployment(NAMESPACE).items == []
    assert batch.list_namespaced_job(NAMESPACE).items == []
    assert batch.list_namespaced_cron_job(NAMESPACE).items == []
    assert core.list_namespaced_service(NAMESPACE).items == []
    assert core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items == []
    # What helm never owned stays in the namespace until it is deleted (docs/helm.md):
    # the Secrets the certs Job created (so a reinstall keeps its CA and audit key, and
    # old signatures stay verifiable) and the registration Lease.
    secrets = {
        s.metadata.name
        for s in core.list_namespaced_secret(NAMESPACE).items
        if s.metadata is not None
    }
    assert secrets == {"nfsguard-tls", "nfsguard-audit-key"}
    report.append(f"node: helm uninstall {took:.1f} s (pre-delete hook, pods gone)")
