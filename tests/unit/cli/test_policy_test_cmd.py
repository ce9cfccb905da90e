"""`nfsguard policy test`: suites of cases with expected outcomes and golden objects.

(Over 400 lines: one test per suite feature and per refusal, all on one tmp layout.)

Real files in a temporary directory, the real command in-process through click
(tests/integration/test_cli_entry_points.py runs it as the installed binary).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support import nfsguard

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: site
spec:
  version: "2026.11.27-1"
  rules:
  - name: pin-filer
    match:
      exports:
      - server: 10.20.0.0/16
        path: /exports/**
    action: pin
  - name: strict-filer
    match:
      exports: [{server: strict.nfs.example}]
    action: pin
    onExplicit: deny
  - name: deny-legacy
    match:
      exports: [{server: legacy.nfs.example}]
    action: deny
  - name: warn-lab
    match:
      exports: [{server: "*.lab.example"}]
    action: warn
  - name: audit-archive
    match:
      storageClassNames: [archive]
    action: audit
  - name: exempt-labelled
    match:
      objectSelector:
        matchLabels: {nfsguard.io/exempt: "true"}
    action: exempt
  - name: el7-nodes
    match:
      exports: [{server: el7.nfs.example}]
      nodeKernels:
      - family: el7
        min: 3.10.0-862
        below: 3.10.0-957
    action: pin
"""

PV = """\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-a
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  mountOptions: [hard, "vers=4.1,timeo=600"]
  nfs: {server: 10.20.3.4, path: /exports/a}
"""

GOLDEN = """\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-a
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteMany]
  mountOptions: [hard, "nfsvers=4.0,timeo=600"]
  nfs: {server: 10.20.3.4, path: /exports/a}
"""

SUITE = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSPolicyTest
metadata:
  name: site
spec:
  policies: [../policy.yaml]
  cases:
  - name: pinned-golden-file
    objectFile: manifests/pv-a.yaml
    expect:
      outcome: mutated
      objectFile: golden/pv-a.yaml
      rule: pin-filer
      policy: site
      warning: (pinned, was 4.1)
  - name: pinned-mount-options
    object:
      apiVersion: storage.k8s.io/v1
      kind: StorageClass
      metadata: {name: sc}
      provisioner: nfs.csi.k8s.io
      parameters: {server: 10.20.0.9, share: /exports}
    expect:
      outcome: mutated
      mountOptions: [nfsvers=4.0]
      nodeOptions: [nfsvers=4.0]
  - name: denied
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-legacy}
      spec:
        nfs: {server: legacy.nfs.example, path: /x}
    expect:
      outcome: denied
      message: set nfsvers=4.0 in mountOptions
  - name: on-explicit-deny
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-strict}
      spec:
        mountOptions: [nfsvers=4.2]
        nfs: {server: strict.nfs.example, path: /x}
    expect:
      outcome: denied
      message: does not allow the explicit NFS 4.2
  - name: warned
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-lab}
      spec:
        nfs: {server: nfs1.lab.example, path: /x}
    expect:
      outcome: warned
      warning: "is at risk: PersistentVolume/pv-lab (nfsguard rule warn-lab)"
  - name: audited
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-archive}
      spec:
        storageClassName: archive
        nfs: {server: 192.0.2.1, path: /x}
    expect:
      outcome: audited
  - name: exempt
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata:
        name: pv-exempt
        labels: {nfsguard.io/exempt: "true"}
      spec:
        nfs: {server: legacy.nfs.example, path: /x}
    expect:
      outcome: exempt
      rule: exempt-labelled
  - name: unchanged-compliant
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-40}
      spec:
        mountOptions: [nfsvers=4.0]
        nfs: {server: 10.20.3.4, path: /exports/a}
    expect:
      outcome: unchanged
  - name: unchanged-not-nfs
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-host}
      spec:
        hostPath: {path: /tmp}
    expect:
      outcome: ignored
  - name: kernels-from-inline-nodes
    nodes: [3.10.0-862.14.4.el7.x86_64, 5.15.0-91-generic]
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-el7}
      spec:
        nfs: {server: el7.nfs.example, path: /x}
    expect:
      outcome: mutated
      rule: el7-nodes
  - name: kernels-outside-the-range
    nodes: [{name: n1, kernel: 3.10.0-1160.el7.x86_64}]
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-el7}
      spec:
        nfs: {server: el7.nfs.example, path: /x}
    expect:
      outcome: unmatched
  - name: update-operation
    operation: UPDATE
    object:
      apiVersion: v1
      kind: PersistentVolume
      metadata: {name: pv-upd}
      spec:
        mountOptions: [vers=4.2]
        nfs: {server: 10.20.3.4, path: /exports/b}
    expect:
      outcome: mutated
      mountOptions: [nfsvers=4.0]
"""


def layout(tmp_path: Path, suite: str = SUITE, golden: str = GOLDEN) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    tests = tmp_path / "tests"
    (tests / "manifests").mkdir(parents=True)
    (tests / "golden").mkdir()
    (tests / "manifests" / "pv-a.yaml").write_text(PV)
    (tests / "golden" / "pv-a.yaml").write_text(golden)
    (tests / "site.yaml").write_text(suite)
    return tests


def run(*args: str) -> tuple[int, list[str], list[str]]:
    result = nfsguard("policy", "test", *args)
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


CASES = [
    "pinned-golden-file",
    "pinned-mount-options",
    "denied",
    "on-explicit-deny",
    "warned",
    "audited",
    "exempt",
    "unchanged-compliant",
    "unchanged-not-nfs",
    "kernels-from-inline-nodes",
    "kernels-outside-the-range",
    "update-operation",
]


def test_a_passing_suite(tmp_path: Path) -> None:
    tests = layout(tmp_path)
    code, out, err = run(str(tests))  # a directory: suites found inside, other YAML skipped
    assert err == []
    assert out == [*(f"PASS site::{c}" for c in CASES), "12 passed, 0 failed"]
    assert code == 0


def test_a_wrong_golden_object_shows_a_yaml_diff(tmp_path: Path) -> None:
    wrong = GOLDEN.replace('"nfsvers=4.0,timeo=600"', '"nfsvers=4.0,timeo=900"')
    tests = layout(tmp_path, golden=wrong)
    code, out, _ = run(str(tests / "site.yaml"))
    golden = tests / "golden" / "pv-a.yaml"
    assert out[0] == f"FAIL site::pinned-golden-file ({tests}/site.yaml:8)"
    assert out[1:11] == [
        "    object: the admitted object differs from the golden one:",
        f"    --- expected ({golden})",
        "    +++ admitted",
        "    @@ -9,7 +9,7 @@",
        "         storage: 1Gi",
        "       mountOptions:",
        "       - hard",
        "    -  - nfsvers=4.0,timeo=900",
        "    +  - nfsvers=4.0,timeo=600",
        "       nfs:",
    ]
    assert out[-1] == "11 passed, 1 failed"
    assert code == 1


def test_every_kind_of_wrong_expectation_is_reported(tmp_path: Path) -> None:
    suite = SUITE.split("  - name: pinned-mount-options")[0].replace(
        "      outcome: mutated\n      objectFile: golden/pv-a.yaml\n"
        "      rule: pin-filer\n      policy: site\n      warning: (pinned, was 4.1)\n",
        "      outcome: warned\n      rule: warn-lab\n      policy: other\n"
        "      message: nothing like this\n      warning: no such warning\n"
        "      mountOptions: [hard]\n      nodeOptions: [hard]\n",
    )
    code, out, _ = run(str(layout(tmp_path, suite=suite) / "site.yaml"))
    assert code == 1
    assert out[0].startswith("FAIL site::pinned-golden-file (")
    assert out[1].startswith('    outcome: expected warned, got mutated: rule "pin-filer"')
    assert out[2:] == [
        "    rule: expected 'warn-lab', got 'pin-filer'",
        "    policy: expected 'other', got 'site'",
        "    message: expected to contain 'nothing like this', got 'rule \"pin-filer\" (policy "
        "site version 2026.11.27-1) pinned nfsvers=4.0 for 10.20.3.4:/exports/a (was NFS 4.1 "
        "(explicit))'",
        "    warning: expected one containing 'no such warning', got ['add nfsvers=4.0 to the "
        "manifest (pinned, was 4.1): PersistentVolume/pv-a (nfsguard rule pin-filer)']",
        "    mountOptions: expected ['hard'], got ['hard', 'nfsvers=4.0,timeo=600']",
        "    nodeOptions: expected ['hard'], got ['hard', 'nfsvers=4.0', 'timeo=600']",
        "0 passed, 1 failed",
    ]


def test_golden_equals_what_nfsguard_review_admits(tmp_path: Path) -> None:
    """The suite and `nfsguard review` run the same decision: same admitted object."""
    tests = layout(tmp_path)
    result = nfsguard(
        "review", "--policy", str(tmp_path / "policy.yaml"), str(tests / "manifests" / "pv-a.yaml")
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == yaml.safe_load(GOLDEN)


def test_keyword_selects_cases(tmp_path: Path) -> None:
    code, out, _ = run("-k", "unchanged", str(layout(tmp_path)))
    assert (code, out) == (
        0,
        ["PASS site::unchanged-compliant", "PASS site::unchanged-not-nfs", "2 passed, 0 failed"],
    )


def bad_suite(tmp_path: Path, suite: str) -> tuple[int, list[str], list[str]]:
    tests = layout(tmp_path, suite=suite)
    code, out, err = run(str(tests / "site.yaml"))
    return code, out, [line.replace(str(tests), "T") for line in err]


HEAD = SUITE.split("  cases:\n")[0] + "  cases:\n"  # cases start on line 8


def test_bad_suite_unknown_key(tmp_path: Path) -> None:
    suite = HEAD + "  - name: a\n    objectFile: manifests/pv-a.yaml\n"
    suite += "    expect: {outcome: mutated, mountOption: [x]}\n"
    assert bad_suite(tmp_path, suite) == (
        2,
        [],
        [
            "T/site.yaml:10: unknown key 'mountOption' in spec.cases[0].expect (allowed: "
            "existing, message, mountOptions, nodeOptions, object, objectFile, outcome, policy, "
            "rule, warning, warnings, wouldBe)"
        ],
    )


def test_bad_suite_values_and_missing_keys(tmp_path: Path) -> None:
    suite = HEAD + "  - name: a\n    object: {kind: PersistentVolume}\n"
    suite += "    expect: {outcome: pinned}\n"
    suite += "  - name: b\n    objectFile: manifests/pv-a.yaml\n"
    assert bad_suite(tmp_path, suite) == (
        2,
        [],
        [
            "T/site.yaml:10: spec.cases[0].expect.outcome: 'pinned' is not one of: mutated, "
            "denied, unchanged, warned, exempt, audited, compliant, unmatched, ignored",
            "T/site.yaml:11: spec.cases[1]: missing required key 'expect'",
        ],
    )


def test_bad_suite_files_it_names(tmp_path: Path) -> None:
    suite = HEAD + "  - name: a\n    objectFile: manifests/missing.yaml\n"
    suite += "    expect: {outcome: mutated}\n"
    suite += "  - name: b\n    object: {kind: PersistentVolume}\n    objectFile: x.yaml\n"
    suite += "    expect: {outcome: mutated}\n"
    suite += "  - name: a\n    objectFile: manifests/pv-a.yaml\n"
    suite += "    expect: {outcome: denied, objectFile: golden/pv-a.yaml}\n"
    code, out, err = bad_suite(tmp_path, suite)
    assert (code, out) == (2, [])
    assert err[0].startswith("T/site.yaml:9: T/manifests/missing.yaml: cannot read:")
    assert err[1:] == [
        "T/site.yaml:11: a case needs exactly one of object, objectFile",
        "T/site.yaml:15: duplicate case name 'a'",
    ]


def test_bad_suite_yaml_and_kind(tmp_path: Path) -> None:
    code, out, err = bad_suite(tmp_path, HEAD + "  - name: [a\n")
    assert (code, out) == (2, [])
    assert err == ["T/site.yaml:9: YAML syntax error: expected ',' or ']', but got '<stream end>'"]
    suite = SUITE.replace("kind: NFSPolicyTest", "kind: NFSPolicyTests")
    (tmp_path / "k").mkdir()
    code, out, err = bad_suite(tmp_path / "k", suite)
    assert (code, err) == (
        2,
        [
            "T/site.yaml:2: not a test suite: kind 'NFSPolicyTests' (expected NFSPolicyTest, "
            "apiVersion nfsguard.io/v1alpha1)"
        ],
    )


def test_a_broken_policy_named_by_a_suite_is_bad_input(tmp_path: Path) -> None:
    tests = layout(tmp_path)
    (tmp_path / "policy.yaml").write_text(
        POLICY.replace("- server: 10.20.0.0/16", "- server: 10.20.0.1/16")
    )
    code, out, err = run(str(tests))
    assert (code, out) == (2, [])
    assert err == [
        f"{tmp_path}/policy.yaml:11:9: rule \"pin-filer\": invalid CIDR '10.20.0.1/16': "
        "10.20.0.1/16 has host bits set"
    ]


def test_missing_path_and_directory_without_suites(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "nope"))
    assert (code, err) == (2, [f"{tmp_path}/nope: no such file or directory"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "golden.yaml").write_text(GOLDEN)
    code, _, err = run(str(tmp_path / "empty"))
    assert (code, err) == (2, [f"{tmp_path}/empty: no test suites (kind: NFSPolicyTest) found"])
