"""The report of one object: names, the verdict -> result mapping, summary counts; the
namespaced Report of a Pod or workload, one result per inline NFS volume and rule.

The field names are checked against the real CRD by the apiserver in
tests/e2e/test_reporter.py (writes use fieldValidation=Strict)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.samples import csi_pv, csi_volume, nfs_volume, pv, storage_class, workload
from tests.support import engine_for
from webhook.engine.engine import Engine
from webhook.engine.openreport import cluster_report, report_for, report_name
from webhook.engine.pod_volumes import names_inline_volume
from webhook.engine.scan import classify

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: site}
spec:
  version: "t-1"
  pin: "4.0"
  rules:
  - name: exempt-lab
    match:
      exports:
      - server: 192.0.2.30
    action: exempt
  - name: pin-incident
    match:
      exports:
      - server: 192.168.100.7
    action: pin
  - name: deny-legacy
    match:
      exports:
      - server: 192.0.2.20
    action: deny
  - name: warn-lab
    match:
      exports:
      - server: 192.0.2.40
    action: warn
"""


@pytest.fixture(scope="module")
def engine() -> Engine:
    return engine_for([("site.yaml", POLICY)])


def report(engine: Engine, obj: dict[str, Any]) -> dict[str, Any]:
    c = classify(engine.evaluate(obj))
    assert c is not None
    return cluster_report(obj, c)


@pytest.mark.parametrize(
    "obj,verdict,result,rule",
    [
        (pv(), "fixable", "fail", "pin-incident"),
        (pv(mount_options=["nfsvers=4.0"]), "compliant", "pass", "pin-incident"),
        (
            csi_pv(attrs={"mountOptions": "nfsvers=4.1"}),
            "not-fixable-in-place",
            "fail",
            "pin-incident",
        ),
        (pv(server="192.0.2.20"), "denied", "fail", "deny-legacy"),
        (pv(server="192.0.2.30"), "exempt", "skip", "exempt-lab"),
        (pv(server="192.0.2.40"), "compliant", "warn", "warn-lab"),
        (pv(server="198.51.100.1"), "compliant", "pass", "effective-version"),
        (storage_class(), "fixable", "fail", "pin-incident"),
    ],
)
def test_verdict_maps_to_a_result(
    engine: Engine, obj: dict[str, Any], verdict: str, result: str, rule: str
) -> None:
    r = report(engine, obj)
    (only,) = r["results"]
    assert (only["rule"], only["result"], only["properties"]["verdict"]) == (rule, result, verdict)
    assert only["policy"] == ("site" if rule != "effective-version" else "nfsguard")
    assert only["source"] == r["source"] == "nfsguard"
    assert only["resources"] == [r["scope"]]
    assert r["summary"] == {k: int(k == result) for k in ("pass", "fail", "warn", "error", "skip")}
    assert r["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "nfsguard"}
    assert set(only["properties"]) >= {"export", "version", "verdict"}
    assert all(isinstance(v, str) for v in only["properties"].values())  # a string map


def test_a_matched_rule_that_does_not_decide_is_skipped(engine: Engine) -> None:
    # exempt and pin both match; exempt decides (precedence), pin is reported as skip
    both = engine_for(
        [("site.yaml", POLICY.replace("- server: 192.0.2.30", "- server: 192.168.100.7"))]
    )
    r = report(both, pv())
    assert {x["rule"]: x["result"] for x in r["results"]} == {
        "exempt-lab": "skip",
        "pin-incident": "skip",
    }
    decided = [x for x in r["results"] if "decides" not in x["message"]]
    assert [x["rule"] for x in decided] == ["exempt-lab"]
    assert r["summary"]["skip"] == 2


def test_report_names() -> None:
    assert report_name("PersistentVolume", "pv-a") == "nfsguard-pv-pv-a"
    assert report_name("StorageClass", "nfs-ssd") == "nfsguard-sc-nfs-ssd"
    long_a, long_b = "a" * 250, "a" * 249 + "b"
    na, nb = report_name("PersistentVolume", long_a), report_name("PersistentVolume", long_b)
    assert len(na) <= 253 and len(nb) <= 253 and na != nb
    assert na.startswith("nfsguard-pv-aaa")


# --- Pods and workloads: namespaced Reports ---------------------------------------------

KINDS = ["Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"]


@pytest.mark.parametrize("kind", [*KINDS, "ReplicationController"])
def test_a_workload_gets_a_namespaced_report_per_volume(engine: Engine, kind: str) -> None:
    obj = workload(
        kind,
        [
            {"name": "scratch", "emptyDir": {}},
            nfs_volume("data", "192.0.2.20", "/legacy"),
            csi_volume("shared", mount_options="hard"),
            nfs_volume("lab", "192.0.2.40", "/lab"),
        ],
        name="web",
        namespace="shop",
    )
    obj["metadata"]["uid"] = "u-1"
    c = classify(engine.evaluate(obj))
    assert c is not None
    r = report_for(obj, c)
    assert (r["apiVersion"], r["kind"]) == ("openreports.io/v1alpha1", "Report")
    assert r["metadata"]["namespace"] == "shop"
    assert r["metadata"]["name"] == f"nfsguard-{kind.lower()}-web"
    assert r["scope"] == {
        "apiVersion": obj["apiVersion"],
        "kind": kind,
        "namespace": "shop",
        "name": "web",
        "uid": "u-1",
    }
    got = [
        (x["properties"]["volume"], x["rule"], x["result"], x["properties"]["verdict"])
        for x in r["results"]
    ]
    assert got == [
        ("data", "deny-legacy", "fail", "denied"),
        ("shared", "pin-incident", "fail", "not-fixable-in-place"),
        ("lab", "warn-lab", "warn", "compliant"),
    ]
    shared = r["results"][1]
    assert "nfsvers=4.0" in shared["properties"]["wayOut"]
    assert "volume shared" in shared["properties"]["wayOut"]
    assert r["results"][0]["message"].startswith('rule "deny-legacy" (policy site')
    assert "kind: PersistentVolume" in r["results"][0]["message"]  # the way out
    assert r["summary"] == {"pass": 0, "fail": 2, "warn": 1, "error": 0, "skip": 0}
    assert all(x["resources"] == [r["scope"]] for x in r["results"])
    assert all(isinstance(v, str) for x in r["results"] for v in x["properties"].values())


def test_a_fixed_workload_passes_and_one_without_nfs_has_no_report(engine: Engine) -> None:
    pinned = workload("Deployment", [csi_volume("shared", mount_options="nfsvers=4.0,hard")])
    c = classify(engine.evaluate(pinned))
    assert c is not None
    r = report_for(pinned, c)
    assert [(x["rule"], x["result"]) for x in r["results"]] == [("pin-incident", "pass")]
    # a PVC instead of the inline volume: out of scope, no report (the reporter deletes it)
    claimed = workload(
        "Deployment", [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]
    )
    assert classify(engine.evaluate(claimed)) is None


def test_a_pv_still_gets_a_cluster_report(engine: Engine) -> None:
    obj = pv()
    c = classify(engine.evaluate(obj))
    assert c is not None
    r = report_for(obj, c)
    assert r["kind"] == "ClusterReport" and "namespace" not in r["metadata"]
    assert "namespace" not in r["scope"]


@pytest.mark.parametrize(
    "volumes,names",
    [
        (None, False),
        ([], False),
        ([{"name": "e", "emptyDir": {}}, {"name": "c", "persistentVolumeClaim": {}}], False),
        ([nfs_volume()], True),
        ([csi_volume(driver="ebs.csi.aws.com")], True),  # a profile may call it NFS
    ],
)
def test_names_inline_volume(volumes: list[dict[str, Any]] | None, names: bool) -> None:
    for kind in [*KINDS, "ReplicationController"]:
        assert names_inline_volume(workload(kind, volumes)) is names, kind


def test_names_inline_volume_lets_the_engine_judge_a_bad_shape() -> None:
    bad = workload("Pod", None)
    bad["spec"]["volumes"] = "not a list"
    assert names_inline_volume(bad)
    assert names_inline_volume({"kind": "Deployment", "spec": {"template": 3}})
