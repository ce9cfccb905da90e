"""The ClusterReport of one object: names, the verdict -> result mapping, summary counts.

The field names are checked against the real CRD by the apiserver in
tests/e2e/test_reporter.py (writes use fieldValidation=Strict)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.samples import csi_pv, pv, storage_class
from tests.support import engine_for
from webhook.engine.engine import Engine
from webhook.engine.openreport import cluster_report, report_name
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
