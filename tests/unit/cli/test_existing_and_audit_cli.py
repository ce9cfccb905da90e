"""What policy authors see of existing objects and Audit enforcement: ``review --old``,
``policy explain --old``, and ``policy test`` cases with an oldObject, every warning
matched whole (``expect.warnings``) and ``expect.wouldBe``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support import nfsguard

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: site}
spec:
  version: "1"
  rules:
  - name: deny-old
    match: {exports: [{server: 192.0.2.40}]}
    action: deny
  - name: pin-audit
    match: {exports: [{server: 192.0.2.41}]}
    action: pin
    enforcement: Audit
"""


def pv(name: str, server: str, options: list[str], **meta: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, **meta},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "mountOptions": options,
            "nfs": {"server": server, "path": "/x"},
        },
    }


OLD = pv("pv-old", "192.0.2.40", ["hard"])
BOUND = pv("pv-old", "192.0.2.40", ["hard"], labels={"bound": "yes"})
ASKS_42 = pv("pv-old", "192.0.2.40", ["hard", "nfsvers=4.2"])


def files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    old, new, asks = tmp_path / "old.yaml", tmp_path / "new.yaml", tmp_path / "asks.yaml"
    old.write_text(yaml.safe_dump(OLD))
    new.write_text(yaml.safe_dump(BOUND))
    asks.write_text(yaml.safe_dump(ASKS_42))
    return policy, old, new, asks


def test_review_with_old_allows_an_existing_violation(tmp_path: Path) -> None:
    policy, old, new, asks = files(tmp_path)
    without = nfsguard("review", "--policy", str(policy), "--operation", "UPDATE", str(new))
    assert without.exit_code == 1 and "denied" in without.stderr
    kept = nfsguard("review", "--policy", str(policy), "--old", str(old), str(new))
    assert kept.exit_code == 0, kept.stderr
    assert (
        "warning: set nfsvers=4.0 in mountOptions (allowed: options unchanged): "
        "PersistentVolume/pv-old (nfsguard rule deny-old)"
    ) in kept.stderr
    assert yaml.safe_load(kept.stdout) == BOUND
    changed = nfsguard("review", "--policy", str(policy), "--old", str(old), str(asks))
    assert changed.exit_code == 1 and 'rule "deny-old"' in changed.stderr


def test_explain_with_old_says_existing_object(tmp_path: Path) -> None:
    policy, old, new, _ = files(tmp_path)
    result = nfsguard(
        "policy", "explain", "--policy", str(policy), "--old", str(old), "-o", "json", str(new)
    )
    assert result.exit_code == 0, result.stderr
    (data,) = json.loads(result.stdout)
    assert data["operation"] == "UPDATE" and data["existing"] is True
    assert data["outcome"] == "warned" and data["allowed"] is True
    assert data["reason"].startswith("existing object: options unchanged")
    text = nfsguard("policy", "explain", "--policy", str(policy), "--old", str(old), str(new))
    assert "  existing:    yes: the NFS options are those of the old object" in text.stdout


SUITE = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSPolicyTest
metadata: {{name: rollout}}
spec:
  policies: [policy.yaml]
  cases:
  - name: bound-existing-pv
    oldObjectFile: old.yaml
    objectFile: new.yaml
    expect:
      outcome: warned
      existing: true
      rule: deny-old
      warnings:
      - "{W_EXISTING}"
  - name: asks-for-4.2
    oldObjectFile: old.yaml
    objectFile: asks.yaml
    expect: {{outcome: denied, existing: false}}
  - name: audit-would-pin
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {{name: pv-audit}}
      spec: {{nfs: {{server: 192.0.2.41, path: /x}}}}
    expect:
      outcome: warned
      wouldBe: mutated
      mountOptions: []
      warnings:
      - "{W_AUDIT}"
""".format(
    W_EXISTING="set nfsvers=4.0 in mountOptions (allowed: options unchanged): "
    "PersistentVolume/pv-old (nfsguard rule deny-old)",
    W_AUDIT="set nfsvers=4.0 in mountOptions (audit: would pin it): "
    "PersistentVolume/pv-audit (nfsguard rule pin-audit)",
)


def test_policy_test_expresses_existing_objects_audit_and_whole_warnings(tmp_path: Path) -> None:
    files(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    result = nfsguard("policy", "test", str(suite))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "PASS rollout::bound-existing-pv",
        "PASS rollout::asks-for-4.2",
        "PASS rollout::audit-would-pin",
        "3 passed, 0 failed",
    ]


def test_policy_test_reports_a_warning_that_is_not_whole(tmp_path: Path) -> None:
    files(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        SUITE.replace("(nfsguard rule deny-old)", "").replace("wouldBe: mutated", "wouldBe: denied")
    )
    result = nfsguard("policy", "test", str(suite))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL rollout::bound-existing-pv (")
    assert lines[1] == (
        "    warnings: expected exactly ['set nfsvers=4.0 in mountOptions (allowed: options "
        "unchanged): PersistentVolume/pv-old '], got ['set nfsvers=4.0 in mountOptions (allowed: "
        "options unchanged): PersistentVolume/pv-old (nfsguard rule deny-old)']"
    )
    assert "    wouldBe: expected denied, got mutated" in lines
    assert lines[-1] == "1 passed, 2 failed"


def test_a_suite_old_object_file_that_cannot_be_read_is_bad_input(tmp_path: Path) -> None:
    files(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.replace("oldObjectFile: old.yaml", "oldObjectFile: missing.yaml", 1))
    result = nfsguard("policy", "test", str(suite))
    assert result.exit_code == 2
    assert "suite.yaml:8:" in result.stderr and "missing.yaml" in result.stderr
