"""`nfsguard policy test -o text|json|junit` and `--fail-only`: the forms CI systems read.

One suite with a passing and a failing case, run by the real command in-process.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support import nfsguard

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: site
spec:
  version: "1"
  rules:
  - name: pin-filer
    match:
      exports: [{server: 10.20.0.0/16}]
    action: pin
"""

SUITE = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSPolicyTest
metadata:
  name: site
spec:
  policies: [policy.yaml]
  cases:
  - name: pinned
    object: &pv
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-a}
      spec:
        mountOptions: [nfsvers=4.2]
        nfs: {server: 10.20.3.4, path: /a}
    expect: {outcome: mutated, rule: pin-filer}
  - name: wrongly-expected-denied
    object: *pv
    expect: {outcome: denied}
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    return path


def test_text_and_fail_only(suite: Path) -> None:
    result = nfsguard("policy", "test", str(suite))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "PASS site::pinned",
        f"FAIL site::wrongly-expected-denied ({suite}:17)",
        "    outcome: expected denied, got mutated: "
        + result.stdout.split("got mutated: ", 1)[1].splitlines()[0],
        "1 passed, 1 failed",
    ]
    only = nfsguard("policy", "test", "--fail-only", "-o", "text", str(suite))
    assert only.exit_code == 1
    assert only.stdout.splitlines() == result.stdout.splitlines()[1:]


def test_json(suite: Path) -> None:
    result = nfsguard("policy", "test", "-o", "json", str(suite))
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert (out["passed"], out["failed"]) == (1, 1)
    ok, bad = out["cases"]
    assert ok["id"] == "site::pinned" and ok["passed"] and ok["failures"] == []
    assert (bad["suite"], bad["name"], bad["file"], bad["line"]) == (
        "site",
        "wrongly-expected-denied",
        str(suite),
        17,
    )
    assert not bad["passed"] and bad["failures"][0].startswith("outcome: expected denied")
    assert all(isinstance(c["seconds"], float) for c in out["cases"])
    only = json.loads(nfsguard("policy", "test", "-o", "json", "--fail-only", str(suite)).stdout)
    assert (only["passed"], only["failed"], [c["id"] for c in only["cases"]]) == (
        1,
        1,
        ["site::wrongly-expected-denied"],
    )


def test_junit(suite: Path) -> None:
    result = nfsguard("policy", "test", "-o", "junit", str(suite))
    assert result.exit_code == 1
    assert result.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    (testsuite,) = root
    assert (testsuite.get("name"), testsuite.get("tests"), testsuite.get("failures")) == (
        "site",
        "2",
        "1",
    )
    passed, failed = testsuite
    assert (passed.get("classname"), passed.get("name"), list(passed)) == ("site", "pinned", [])
    (failure,) = failed
    assert failure.tag == "failure"
    assert failure.get("message", "").startswith("outcome: expected denied, got mutated")
    assert (failed.get("file"), failed.get("line")) == (str(suite), "17")
    float(failed.get("time", ""))


def test_all_passing_exits_0_in_every_form(suite: Path) -> None:
    for output in ("text", "json", "junit"):
        result = nfsguard("policy", "test", "-o", output, "-k", "pinned", str(suite))
        assert result.exit_code == 0, (output, result.output)
