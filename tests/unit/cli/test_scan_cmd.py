"""``nfsguard scan``/``remediate`` offline on files: the JSON contract, the table, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.fixtures.samples import csi_pv, pv, storage_class
from tests.support import nfsguard

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
"""


def files(tmp_path: Path, *objs: dict[str, object]) -> tuple[str, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    state = tmp_path / "state.yaml"
    state.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(objs)}))
    return str(policy), str(state)


def test_json_contract_and_exit_1_when_at_risk(tmp_path: Path) -> None:
    policy, state = files(
        tmp_path,
        pv("a", mount_options=["hard"]),
        csi_pv("b", attrs={"mountOptions": "vers=4.1"}),
        storage_class(),
    )
    r = nfsguard("scan", "--policy", policy, "-o", "json", state)
    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"objects", "summary"}
    assert doc["summary"] == {
        "compliant": 0,
        "fixable": 2,
        "not-fixable-in-place": 1,
        "denied": 0,
        "exempt": 0,
    }
    by = {o["name"]: o for o in doc["objects"]}
    assert by["a"]["verdict"] == "fixable" and by["a"]["rule"] == "pin-incident"
    assert by["a"]["export"] == "192.168.100.7:/data1/k8sdev/hl"
    assert by["a"]["version"] == "negotiated (starts at 4.2)"
    assert by["a"]["pods"] == []
    assert by["b"]["verdict"] == "not-fixable-in-place" and by["b"]["patch"] is None
    schema = json.loads(Path("webhook/data/scan-output.schema.json").read_text())
    import jsonschema

    jsonschema.validate(doc, schema)
    # yaml is the same document, jsonl a row per line and the summary last
    assert yaml.safe_load(nfsguard("scan", "--policy", policy, "-o", "yaml", state).stdout) == doc
    lines = [
        json.loads(x)
        for x in nfsguard("scan", "--policy", policy, "-o", "jsonl", state).stdout.splitlines()
    ]
    assert lines[-1] == {"summary": doc["summary"]} and lines[:-1] == doc["objects"]


def test_exit_0_when_nothing_is_at_risk_and_a_table_with_a_summary(tmp_path: Path) -> None:
    policy, state = files(tmp_path, pv("a", mount_options=["nfsvers=4.0"]))
    r = nfsguard("scan", "--policy", policy, state)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("COMPLIANT (1)")
    assert r.stdout.strip().splitlines()[-1].startswith("summary: 1 compliant, 0 fixable")


def test_bad_input_is_exit_2_in_one_line(tmp_path: Path) -> None:
    policy, _ = files(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: PersistentVolume\nmetadata: {name: x}\nspec: {nfs: {server: 1}}\n")
    r = nfsguard("scan", "--policy", policy, str(bad))
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "PersistentVolume/x" in r.stderr
    r = nfsguard("scan", "--policy", policy, str(tmp_path / "missing.yaml"))
    assert r.exit_code == 2 and "Traceback" not in r.stderr


def test_remediate_plans_offline_and_refuses_apply_on_files(tmp_path: Path) -> None:
    policy, state = files(tmp_path, pv("a", mount_options=["hard"]))
    r = nfsguard("remediate", "--policy", policy, "-o", "json", state)
    assert r.exit_code == 1
    (row,) = json.loads(r.stdout)["objects"]
    assert row["action"] == "patch" and row["result"] == "planned"
    r = nfsguard("remediate", "--policy", policy, "--apply", state)
    assert r.exit_code == 2 and "need a cluster" in r.stderr
