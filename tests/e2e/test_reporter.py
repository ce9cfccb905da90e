"""``nfsguard report`` against the real kube-apiserver, as a real subprocess: its
OpenReports ClusterReports and namespaced Reports (CRDs installed from the Go module
proxy) follow object creation, changes, deletion and a policy change, for PVs and
StorageClasses and for Pods and workloads with inline NFS volumes; of two instances
exactly one writes; without the CRDs it says so once and keeps its metrics and /readyz.

Every assertion reads what the apiserver stored or what the process served or logged.
Short lease and resync periods keep each test to seconds.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import CLUSTERREPORT_CRD, REPORT_CRD
from tests.e2e.kubecluster import (
    REPO,
    Cleanup,
    ManagedProcess,
    free_port,
    nfs_pv,
    nfs_storage_class,
    pv_model,
    sc_model,
    wait_http_ok,
)
from tests.fixtures.samples import csi_volume, nfs_volume, workload
from webhook.cluster.client import make_api_client
from webhook.cluster.reports import watch
from webhook.cluster.scan import ClusterObjects

NS = "reporter-e2e"
SERVER = "192.168.100.7"  # the incident's server (docs/incident.md); nothing is mounted
GROUP, VERSION, PLURAL = "openreports.io", "v1alpha1", "clusterreports"
SELECTOR = "app.kubernetes.io/managed-by=nfsguard"


def policy(action: str, version: str) -> str:
    return f"""\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: reporter-e2e
spec:
  version: "{version}"
  pin: "4.0"
  rules:
  - name: guard-incident
    match:
      exports:
      - server: {SERVER}
    action: {action}
  - name: exempt-lab
    match:
      exports:
      - server: 192.0.2.31
    action: exempt
"""


Json = dict[str, Any]


class Reporter:
    def __init__(self, proc: ManagedProcess, port: int, identity: str) -> None:
        self.proc, self.port, self.identity = proc, port, identity

    def get(self, path: str) -> tuple[int, str]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")


StartReporter = Callable[..., Reporter]


@pytest.fixture
def start_reporter(
    kubeconfig: Path, core_v1: k8s.CoreV1Api, tmp_path: Path
) -> Iterator[StartReporter]:
    started: list[Reporter] = []
    try:
        core_v1.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NS)))
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise

    def start(policy_file: Path | str, identity: str, lease: str = "nfsguard-report") -> Reporter:
        """``policy_file``: a file, or "NAMESPACE/NAME" of a ConfigMap."""
        port = free_port()
        where = (
            ["--policy", str(policy_file)]
            if isinstance(policy_file, Path)
            else ["--policy-configmap", policy_file]
        )
        argv = [
            str(REPO / ".venv" / "bin" / "nfsguard"),
            "report",
            *where,
            "--kubeconfig",
            str(kubeconfig),
            "--lease-namespace",
            NS,
            "--lease-name",
            lease,
            "--identity",
            identity,
            "--lease-duration",
            "2",
            "--renew-every",
            "0.5",
            "--resync",
            "1",
            "--reload-interval",
            "0.3",
            "--metrics-port",
            str(port),
        ]
        proc = ManagedProcess(f"report-{identity}", argv, tmp_path / f"report-{identity}.log")
        r = Reporter(proc, port, identity)
        started.append(r)
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", 30, process=proc)
        return r

    yield start
    for r in started:
        r.proc.stop()


def reports(api: k8s.ApiClient) -> dict[str, Json]:
    listed = cast(
        Json,
        k8s.CustomObjectsApi(api).list_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=SELECTOR
        ),
    )
    return {str(i["metadata"]["name"]): i for i in listed["items"]}


def eventually(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns a truthy value; fail saying ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except KeyError as exc:  # the report is not (yet, or any more) there
            last = f"no {exc}"
        else:
            if last:
                return last
        time.sleep(0.2)
    pytest.fail(f"not seen within {timeout:.0f} s: {what} (last: {last!r})")


def metric(text: str, sample: str) -> float | None:
    """The value of ``sample`` (name and labels as exposed) in a /metrics page."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def results_of(report: Json) -> dict[str, str]:
    return {r["rule"]: r["result"] for r in report["results"]}


def test_reports_follow_objects_and_the_policy(
    report_crds: tuple[str, ...],
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    storage_v1: k8s.StorageV1Api,
    cleanup: Cleanup,
    start_reporter: StartReporter,
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy("pin", "rep-1"))
    # Before the reporter: objects no webhook admitted.
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(cleanup.pv("rep-intree"), SERVER, "/data1/a", ["hard"]))
    )
    core_v1.create_persistent_volume(pv_model(nfs_pv(cleanup.pv("rep-exempt"), "192.0.2.31", "/x")))
    storage_v1.create_storage_class(
        sc_model(nfs_storage_class(cleanup.sc("rep-nfs-ssd"), SERVER, "/data1"))
    )
    reporter = start_reporter(policy_file, "solo", lease="rep-follow")

    got = eventually(
        "reports of the three objects",
        lambda: (
            (r := reports(api_client))
            and all(
                n in r
                for n in (
                    "nfsguard-pv-rep-intree",
                    "nfsguard-pv-rep-exempt",
                    "nfsguard-sc-rep-nfs-ssd",
                )
            )
            and r
        ),
    )
    intree = got["nfsguard-pv-rep-intree"]
    assert intree["source"] == "nfsguard"
    assert intree["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "nfsguard"
    assert intree["scope"]["kind"] == "PersistentVolume" and intree["scope"]["name"] == "rep-intree"
    (result,) = intree["results"]
    assert (result["policy"], result["rule"], result["result"]) == (
        "reporter-e2e",
        "guard-incident",
        "fail",
    )
    assert result["properties"]["verdict"] == "fixable"
    assert result["properties"]["export"].startswith(SERVER)
    assert result["resources"][0]["name"] == "rep-intree"
    assert intree["summary"]["fail"] == 1 and intree["summary"]["pass"] == 0
    assert results_of(got["nfsguard-pv-rep-exempt"]) == {"exempt-lab": "skip"}
    assert results_of(got["nfsguard-sc-rep-nfs-ssd"]) == {"guard-incident": "fail"}

    # Created after the start: a report appears.
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(cleanup.pv("rep-late"), SERVER, "/data1/b", csi=True))
    )
    eventually("the new PV's report", lambda: "nfsguard-pv-rep-late" in reports(api_client))

    # Fixed by hand (the pin in mountOptions): its result becomes pass.
    core_v1.patch_persistent_volume(
        "rep-intree",
        [{"op": "replace", "path": "/spec/mountOptions", "value": ["hard", "nfsvers=4.0"]}],
    )
    fixed = eventually(
        "rep-intree passing",
        lambda: (
            (r := reports(api_client)["nfsguard-pv-rep-intree"])["results"][0]["result"] == "pass"
            and r
        ),
    )
    assert fixed["results"][0]["properties"]["verdict"] == "compliant"
    assert fixed["summary"]["pass"] == 1 and fixed["summary"]["fail"] == 0

    # Deleted: its report goes.
    core_v1.delete_persistent_volume("rep-late")
    eventually(
        "rep-late's report removed", lambda: "nfsguard-pv-rep-late" not in reports(api_client)
    )

    # A report deleted by hand is written again (the next resync finds it missing).
    k8s.CustomObjectsApi(api_client).delete_cluster_custom_object(
        GROUP, VERSION, PLURAL, "nfsguard-pv-rep-exempt"
    )
    eventually(
        "rep-exempt's report written again",
        lambda: "nfsguard-pv-rep-exempt" in reports(api_client),
    )

    # The policy changes (pin -> warn): every object is evaluated again.
    policy_file.write_text(policy("warn", "rep-2"))
    sc = eventually(
        "the StorageClass re-evaluated under the warn rule",
        lambda: (
            (r := reports(api_client)["nfsguard-sc-rep-nfs-ssd"])["results"][0]["result"] == "warn"
            and r
        ),
    )
    assert sc["results"][0]["properties"]["policyVersion"] == "rep-2"
    assert sc["results"][0]["properties"]["verdict"] == "compliant"

    # The gauges follow the pass that wrote the report, a moment later under load.
    metrics = eventually(
        "the objects gauge counts the StorageClass as compliant",
        lambda: (
            (got := reporter.get("/metrics"))[0] == 200
            and 'nfsguard_report_objects{kind="StorageClass",rule="guard-incident",'
            'verdict="compliant"}'
            in got[1]
            and got[1]
        ),
    )
    assert "nfsguard_report_leader 1.0" in metrics
    assert reporter.get("/readyz")[0] == 200
    # Written by the one writer, through its field manager.
    for report in reports(api_client).values():
        assert report["metadata"]["annotations"]["nfsguard.io/written-by"] == "solo"
        managers = {m["manager"] for m in report["metadata"].get("managedFields") or []}
        assert managers == {"nfsguard-report"}


def namespaced_reports(api: k8s.ApiClient) -> dict[str, Json]:
    listed = cast(
        Json,
        k8s.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, NS, "reports", label_selector=SELECTOR
        ),
    )
    return {str(i["metadata"]["name"]): i for i in listed["items"]}


def test_pods_and_workloads_get_namespaced_reports(
    report_crds: tuple[str, ...],
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    start_reporter: StartReporter,
    tmp_path: Path,
) -> None:
    """A Deployment with an inline nfs volume and a Pod with an unpinned csi-driver-nfs
    inline volume, both to the pinned export and stored before any webhook saw them, get
    a Report each in their namespace naming the rule; a fixed Deployment passes, one that
    mounts a PVC instead and a deleted Pod lose their reports; a Pod without NFS volumes
    never gets one."""
    apps = k8s.AppsV1Api(api_client)
    with contextlib.suppress(k8s.ApiException):  # no controller-manager makes it here
        core_v1.create_namespaced_service_account(
            NS, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="default"))
        )
    deploy = workload(
        "Deployment", [nfs_volume("data", SERVER, "/data1/web")], name="rep-web", namespace=NS
    )
    pod = workload(
        "Pod",
        [
            {"name": "tmp", "emptyDir": {}},
            csi_volume("shared", server=SERVER, share="/data1", mount_options="hard"),
        ],
        name="rep-pod",
        namespace=NS,
    )
    plain = workload("Pod", [{"name": "tmp", "emptyDir": {}}], name="rep-plain", namespace=NS)
    apps.create_namespaced_deployment(NS, cast(Any, deploy))  # plain JSON bodies
    core_v1.create_namespaced_pod(NS, cast(Any, pod))
    core_v1.create_namespaced_pod(NS, cast(Any, plain))
    try:
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(policy("pin", "rep-1"))
        start_reporter(policy_file, "pods", lease="rep-pods")
        got = eventually(
            "the Deployment's and the Pod's reports",
            lambda: (
                (r := namespaced_reports(api_client))
                and "nfsguard-deployment-rep-web" in r
                and "nfsguard-pod-rep-pod" in r
                and r
            ),
        )
        assert "nfsguard-pod-rep-plain" not in got
        web = got["nfsguard-deployment-rep-web"]
        assert web["metadata"]["namespace"] == NS
        assert (web["scope"]["kind"], web["scope"]["namespace"], web["scope"]["name"]) == (
            "Deployment",
            NS,
            "rep-web",
        )
        (result,) = web["results"]
        assert (result["policy"], result["rule"], result["result"]) == (
            "reporter-e2e",
            "guard-incident",
            "fail",
        )
        assert result["properties"]["verdict"] == "denied"
        assert result["properties"]["volume"] == "data"
        assert result["properties"]["export"].startswith(SERVER)
        assert "kind: PersistentVolume" in result["message"]  # the way out
        assert web["summary"]["fail"] == 1
        (shared,) = got["nfsguard-pod-rep-pod"]["results"]
        assert (shared["rule"], shared["result"]) == ("guard-incident", "fail")
        assert shared["properties"]["verdict"] == "not-fixable-in-place"
        assert shared["properties"]["volume"] == "shared"
        assert "nfsvers=4.0" in shared["properties"]["wayOut"]
        for report in got.values():
            managers = {m["manager"] for m in report["metadata"].get("managedFields") or []}
            assert managers == {"nfsguard-report"}
            assert report["metadata"]["annotations"]["nfsguard.io/written-by"] == "pods"

        # Fixed: the template mounts the export through csi-driver-nfs with the pin.
        pinned = csi_volume("data", server=SERVER, share="/data1", mount_options="nfsvers=4.0")
        apps.patch_namespaced_deployment(
            "rep-web",
            NS,
            [{"op": "replace", "path": "/spec/template/spec/volumes/0", "value": pinned}],
        )
        fixed = eventually(
            "rep-web passing",
            lambda: (
                (r := namespaced_reports(api_client)["nfsguard-deployment-rep-web"])["results"][0][
                    "result"
                ]
                == "pass"
                and r
            ),
        )
        assert fixed["summary"] == {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0}
        assert fixed["results"][0]["properties"]["verdict"] == "compliant"

        # Mounting a PVC instead: no inline NFS volume, no report.
        claim = {"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}
        apps.patch_namespaced_deployment(
            "rep-web",
            NS,
            [{"op": "replace", "path": "/spec/template/spec/volumes/0", "value": claim}],
        )
        eventually(
            "rep-web's report removed",
            lambda: "nfsguard-deployment-rep-web" not in namespaced_reports(api_client),
        )
        # A Pod's volumes never change: deleted (its controller would recreate it fixed).
        core_v1.delete_namespaced_pod("rep-pod", NS, grace_period_seconds=0)
        eventually(
            "rep-pod's report removed",
            lambda: "nfsguard-pod-rep-pod" not in namespaced_reports(api_client),
        )
    finally:
        with contextlib.suppress(k8s.ApiException):
            apps.delete_namespaced_deployment("rep-web", NS)
        for name in ("rep-pod", "rep-plain"):
            with contextlib.suppress(k8s.ApiException):
                core_v1.delete_namespaced_pod(name, NS, grace_period_seconds=0)


def test_two_reporters_one_writer(
    report_crds: tuple[str, ...],
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
    start_reporter: StartReporter,
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy("pin", "rep-1"))
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(cleanup.pv("rep-pair"), SERVER, "/data1/p", ["hard"]))
    )
    first = start_reporter(policy_file, "first", lease="rep-pair")
    eventually(
        "first holds the lease", lambda: "nfsguard_report_leader 1.0" in first.get("/metrics")[1]
    )
    second = start_reporter(policy_file, "second", lease="rep-pair")
    coordination = k8s.CoordinationV1Api(api_client)

    def holder() -> str:
        spec = coordination.read_namespaced_lease("rep-pair", NS).spec
        return str((spec.holder_identity if spec is not None else None) or "")

    eventually("rep-pair's report", lambda: "nfsguard-pv-rep-pair" in reports(api_client))
    # The standby keeps its view (it has evaluated the PV) but does not lead.
    eventually(
        "second's view of the PV",
        lambda: 'kind="PersistentVolume"' in second.get("/metrics")[1],
    )
    assert "nfsguard_report_leader 0.0" in second.get("/metrics")[1]
    assert holder() == "first"
    assert metric(first.get("/metrics")[1], 'nfsguard_report_writes_total{op="put"}')
    core_v1.patch_persistent_volume(
        "rep-pair", [{"op": "replace", "path": "/metadata/labels", "value": {"touched": "1"}}]
    )
    time.sleep(1.5)  # a few renew periods and resyncs: both replicas saw the change
    assert holder() == "first"
    # The standby has written nothing, ever (its counter has no sample at all).
    assert "nfsguard_report_writes_total" not in "\n".join(
        line for line in second.get("/metrics")[1].splitlines() if not line.startswith("#")
    )
    report = reports(api_client)["nfsguard-pv-rep-pair"]
    assert report["metadata"]["annotations"]["nfsguard.io/written-by"] == "first"

    # The writer stops (releasing the Lease): the standby takes over and writes.
    first.proc.stop()
    eventually("second holds the lease", lambda: holder() == "second")
    core_v1.patch_persistent_volume(
        "rep-pair",
        [{"op": "replace", "path": "/spec/mountOptions", "value": ["hard", "nfsvers=4.0"]}],
    )
    # Its first pass may rewrite the report before it sees the patch: wait for the fixed one.
    after = eventually(
        "second writes the fixed PV's report",
        lambda: (
            (r := reports(api_client)["nfsguard-pv-rep-pair"])["metadata"]["annotations"][
                "nfsguard.io/written-by"
            ]
            == "second"
            and r["results"][0]["result"] == "pass"
            and r
        ),
    )
    assert after["results"][0]["properties"]["verdict"] == "compliant"


def test_without_the_crd_it_says_so_once_and_keeps_serving(
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
    start_reporter: StartReporter,
    openreports_crds: Path,
    tmp_path: Path,
) -> None:
    ext = k8s.ApiextensionsV1Api(api_client)
    for crd in (CLUSTERREPORT_CRD, REPORT_CRD):
        try:
            ext.delete_custom_resource_definition(crd)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise

    def gone() -> bool:
        for plural in (PLURAL, "reports"):
            try:
                k8s.CustomObjectsApi(api_client).list_cluster_custom_object(GROUP, VERSION, plural)
            except k8s.ApiException as exc:
                if exc.status != 404:
                    return False
            else:
                return False
        return True

    eventually("the ClusterReport and Report resources gone", gone, timeout=60)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy("pin", "rep-1"))
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(cleanup.pv("rep-nocrd"), SERVER, "/data1/n", ["hard"]))
    )
    reporter = start_reporter(policy_file, "nocrd", lease="rep-nocrd")
    eventually("the absent CRDs logged", lambda: reporter.log().count("is not installed") == 2)
    time.sleep(3)  # three resyncs, each of which finds the CRDs absent again
    assert reporter.proc.alive()
    log = reporter.log()
    assert log.count("is not installed") == 2
    assert log.count("ClusterReport CRD (clusterreports.openreports.io) is not installed") == 1
    assert log.count("Report CRD (reports.openreports.io) is not installed") == 1
    assert reporter.get("/readyz")[0] == 200
    metrics = reporter.get("/metrics")[1]
    assert (
        'nfsguard_report_objects{kind="PersistentVolume",rule="guard-incident",verdict="fixable"}'
        in metrics
    )
    assert 'nfsguard_report_openreports_available{kind="ClusterReport"} 0.0' in metrics
    assert 'nfsguard_report_openreports_available{kind="Report"} 0.0' in metrics


def test_policy_from_a_configmap_is_followed(
    report_crds: tuple[str, ...],
    api_client: k8s.ApiClient,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
    start_reporter: StartReporter,
) -> None:
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(cleanup.pv("rep-cm"), SERVER, "/data1/cm", ["hard"]))
    )
    name = "rep-policies"
    cm = k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name=name, namespace=NS),
        data={"site.yaml": policy("pin", "cm-1")},
    )
    core_v1.create_namespaced_config_map(NS, cm)
    try:
        start_reporter(f"{NS}/{name}", "cm", lease="rep-cm")
        eventually(
            "rep-cm failing under the pin rule",
            lambda: (
                results_of(reports(api_client)["nfsguard-pv-rep-cm"]) == {"guard-incident": "fail"}
            ),
        )
        core_v1.patch_namespaced_config_map(
            name, NS, {"data": {"site.yaml": policy("exempt", "cm-2")}}
        )
        report = eventually(
            "rep-cm re-evaluated under the ConfigMap's new policy",
            lambda: (
                (r := reports(api_client)["nfsguard-pv-rep-cm"])["results"][0]["result"] == "skip"
                and r
            ),
        )
        assert report["results"][0]["properties"]["policyVersion"] == "cm-2"
        assert report["results"][0]["properties"]["verdict"] == "exempt"
    finally:
        core_v1.delete_namespaced_config_map(name, NS)


def test_a_list_version_starts_a_watch_that_sees_the_next_change(
    kubeconfig: Path, core_v1: k8s.CoreV1Api, cleanup: Cleanup
) -> None:
    """The watch protocol the reporter follows, on the real apiserver: the
    resourceVersion of a paged list starts a watch that sees the next change (and only
    what came after the list)."""
    cluster = ClusterObjects(make_api_client(kubeconfig, watch=True))
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(cleanup.pv("rep-watch"), SERVER, "/data1/w", ["hard"]))
    )
    seen: dict[str, str] = {}
    listed = [o["metadata"]["name"] for o in cluster.list("PersistentVolume", seen=seen)]
    assert "rep-watch" in listed
    core_v1.patch_persistent_volume("rep-watch", {"metadata": {"labels": {"step": "2"}}})
    events = list(watch(cluster, "PersistentVolume", seen["resourceVersion"], timeout=1))
    mine = [(t, o) for t, o in events if o["metadata"]["name"] == "rep-watch"]
    assert [t for t, _ in mine] == ["MODIFIED"]
    assert mine[0][1]["kind"] == "PersistentVolume"
    assert mine[0][1]["metadata"]["labels"] == {"step": "2"}
