"""Pods and workloads through the commands: ``review``, ``policy explain``, ``policy
test``, ``scan`` and ``webhook-config`` (docs/pods-and-workloads.md)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from tests.fixtures.samples import csi_volume, nfs_volume, pv, workload
from tests.support import nfsguard
from tests.unit.cli.test_scan_cmd import POLICY


def write(tmp_path: Path, name: str, *docs: object) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(list(docs)))
    return str(path)


def test_review_pins_and_denies_workloads(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", yaml.safe_load(POLICY))
    objs = write(
        tmp_path,
        "apps.yaml",
        workload("Deployment", [csi_volume(mount_options="nfsvers=4.2")], name="csi"),
        workload("CronJob", [nfs_volume()], name="inline"),
        workload("Pod", [{"name": "e", "emptyDir": {}}], name="plain"),
    )
    r = nfsguard("review", "--policy", policy, "-o", "json", objs)
    assert r.exit_code == 1, r.stderr  # one object denied
    doc = json.loads(r.stdout)
    rows = doc if isinstance(doc, list) else doc.get("objects", doc.get("results"))
    by = {row["name"]: row for row in rows}
    assert by["csi"]["outcome"] == "mutated" and by["inline"]["outcome"] == "denied"
    assert by["plain"]["outcome"] == "ignored"
    text = nfsguard("review", "--policy", policy, objs)
    assert "CronJob/inline: denied" in text.stdout + text.stderr


def test_explain_json_lists_each_volume(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", yaml.safe_load(POLICY))
    obj = write(tmp_path, "d.yaml", workload("DaemonSet", [nfs_volume("a"), csi_volume("b")]))
    r = nfsguard("policy", "explain", "--policy", policy, "-o", "json", obj)
    assert r.exit_code in (0, 1), r.stderr
    data = json.loads(r.stdout)
    one = data[0] if isinstance(data, list) else data
    assert one["kind"] == "DaemonSet" and one["outcome"] == "denied"
    assert [v["volume"] for v in one["volumes"]] == ["a", "b"]


def test_policy_test_suites_cover_workloads(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    deployment = workload("Deployment", [csi_volume(mount_options="hard")])
    golden = json.loads(json.dumps(deployment))
    golden["spec"]["template"]["spec"]["volumes"][0]["csi"]["volumeAttributes"]["mountOptions"] = (
        "hard,nfsvers=4.0"
    )
    suite = {
        "apiVersion": "nfsguard.io/v1alpha1",
        "kind": "NFSPolicyTest",
        "metadata": {"name": "pods"},
        "spec": {
            "policies": ["policy.yaml"],
            "cases": [
                {
                    "name": "csi-pinned",
                    "object": deployment,
                    "expect": {
                        "outcome": "mutated",
                        "object": golden,
                        "nodeOptions": ["hard", "nfsvers=4.0"],
                    },
                },
                {
                    "name": "inline-denied",
                    "object": workload("StatefulSet", [nfs_volume()]),
                    "expect": {"outcome": "denied", "message": "PersistentVolume with nfsvers=4.0"},
                },
            ],
        },
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    r = nfsguard("policy", "test", str(tmp_path / "suite.yaml"))
    assert r.exit_code == 0, r.stdout + r.stderr


def test_scan_reports_pods_and_workloads(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", yaml.safe_load(POLICY))
    state = write(
        tmp_path,
        "state.yaml",
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                pv("pv-a", mount_options=["nfsvers=4.0"]),
                workload("Pod", [nfs_volume()], name="inline-pod", namespace="team-a"),
                workload("Deployment", [csi_volume()], name="csi-deploy", namespace="team-b"),
                workload("Job", [csi_volume()], name="csi-job"),
                workload("Pod", [{"name": "e", "emptyDir": {}}], name="plain"),
            ],
        },
    )
    r = nfsguard("scan", "--policy", policy, "-o", "json", state)
    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, json.loads(Path("webhook/data/scan-output.schema.json").read_text()))
    by = {o["name"]: o for o in doc["objects"]}
    assert set(by) == {"pv-a", "inline-pod", "csi-deploy", "csi-job"}
    assert by["inline-pod"]["verdict"] == "denied" and by["inline-pod"]["namespace"] == "team-a"
    assert by["inline-pod"]["volume"] == "data"
    deploy = by["csi-deploy"]
    assert deploy["verdict"] == "not-fixable-in-place" and deploy["patch"] is None
    assert "manifest" in deploy["wayOut"] and "volume shared" in deploy["wayOut"]
    assert "Job's template never changes" in by["csi-job"]["wayOut"]
    assert doc["summary"]["denied"] == 1 and doc["summary"]["not-fixable-in-place"] == 2
    # the table says each one's namespace and volume, as the rows do; a PV has neither
    table = nfsguard("scan", "--policy", policy, state).stdout
    assert "  Pod/inline-pod  namespace=team-a  volume=data  export=" in table, table
    assert "  Deployment/csi-deploy  namespace=team-b  volume=" in table, table
    assert "  PersistentVolume/pv-a  export=" in table, table
    # remediate never patches a workload: nothing fixable among them
    plan = nfsguard("remediate", "--policy", policy, "-o", "json", state)
    rows = json.loads(plan.stdout)["objects"]
    assert all(row["action"] != "patch" for row in rows if row["kind"] != "PersistentVolume")


def test_webhook_config_pods_entry(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", yaml.safe_load(POLICY))
    doc = yaml.safe_load(nfsguard("webhook-config", "--policy", policy).stdout)
    pv_entry, pods = doc["webhooks"]
    assert pods["name"] == "pods.nfsguard.io" and pods["failurePolicy"] == "Fail"
    assert [c["name"] for c in pods["matchConditions"]] == [
        "not-being-deleted",
        "volumes-changed",
        "inline-nfs-volume",
    ]
    ignore = yaml.safe_load(
        nfsguard("webhook-config", "--policy", policy, "--pods", "Ignore").stdout
    )
    assert ignore["webhooks"][1]["failurePolicy"] == "Ignore"
    assert ignore["webhooks"][0]["failurePolicy"] == "Fail"
    off = yaml.safe_load(nfsguard("webhook-config", "--policy", policy, "--pods", "off").stdout)
    assert [w["name"] for w in off["webhooks"]] == [pv_entry["name"]]


def test_the_examples_of_the_docs_are_reviewed_as_they_say() -> None:
    text = Path("docs/pods-and-workloads.md").read_text()
    block = text[text.index("## Examples") :]
    block = block[block.index("```yaml\n") + len("```yaml\n") :]
    block = block[: block.index("```\n")]
    docs = [d for d in yaml.safe_load_all(block) if d]
    assert [d["kind"] for d in docs] == ["Deployment", "StatefulSet", "CronJob"]
    r = nfsguard("review", "--policy", "policies/", "-o", "json", "-", stdin=block)
    assert r.exit_code == 1, r.stderr
    rows = json.loads(r.stdout)
    rows = rows if isinstance(rows, list) else rows.get("objects", rows.get("results"))
    assert [row["outcome"] for row in rows] == ["denied", "mutated", "mutated"]
