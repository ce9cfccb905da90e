"""Loading policy text (webhook/config/load.py, policies.py): every problem with FILE:LINE:COL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import load_policies, loaded
from webhook.api.decision import Action
from webhook.api.policy import OnExplicit, Policy, UnknownNodes
from webhook.config.documents import PolicyError, Problem
from webhook.files.sources import read_policy_sources

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "policies"

GOOD = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: site-rules
spec:
  version: "2026.11.27-1"
  rules:
  - name: incident-node003-hang
    description: 4.2 mounts hang against this CentOS 7 server
    references: ["https://bugzilla.redhat.com/show_bug.cgi?id=1552037"]
    match:
      exports:
      - server: 192.168.100.7
        path: /data1/k8sdev/**
      - server: 10.20.0.0/16
      - server: "*.nfs.corp"
      - server: filer.example.com
      provisioners: [nfs.csi.k8s.io]
      storageClassNames: [nfs-ssd]
      nodeKernels:
      - family: el7
        min: 3.10.0-862
        below: 3.10.0-957
      objectSelector:
        matchLabels: {team: data}
        matchExpressions:
        - {key: tier, operator: In, values: [gold]}
    exclude:
      objectSelector:
        matchLabels: {nfsguard.io/skip: "true"}
    action: pin
    onExplicit: deny
  - name: azure-files
    match:
      exports:
      - server: "*.file.core.windows.net"
    action: exempt
"""


def load(text: str, source: str = "policy.yaml") -> tuple[Policy, ...]:
    return load_policies([(source, text)])


def problems_of(text: str, source: str = "policy.yaml") -> list[Problem]:
    with pytest.raises(PolicyError) as info:
        load(text, source)
    return list(info.value.problems)


def with_rule(rule_yaml: str, spec_extra: str = "") -> str:
    """A policy with one rule; ``rule_yaml`` is the rule's body indented by 4."""
    return (
        "apiVersion: nfsguard.io/v1alpha1\n"  # line 1
        "kind: NFSMountPolicy\n"  # 2
        "metadata:\n"  # 3
        "  name: p\n"  # 4
        "spec:\n"  # 5
        '  version: "1"\n'  # 6
        f"{spec_extra}"
        "  rules:\n"  # 7 (+ spec_extra lines)
        "  - name: r\n"  # 8
        f"{rule_yaml}"  # 9...
    )


def test_a_full_policy_loads() -> None:
    (policy,) = load(GOOD)
    assert policy.name == "site-rules"
    assert policy.version == "2026.11.27-1"
    assert policy.pin == "4.0"  # default
    assert policy.unknown_nodes is UnknownNodes.ASSUME_AFFECTED  # default
    assert policy.digest.startswith("sha256:") and len(policy.digest) == 71
    assert policy.source == "policy.yaml"
    first, second = policy.rules
    assert first.name == "incident-node003-hang" and first.action is Action.PIN
    assert first.on_explicit is OnExplicit.DENY
    assert first.references == ("https://bugzilla.redhat.com/show_bug.cgi?id=1552037",)
    assert first.match.exports is not None and len(first.match.exports) == 4
    assert first.match.storage_class_names == ("nfs-ssd",)
    assert first.match.node_kernels is not None and len(first.match.node_kernels) == 1
    assert first.exclude is not None and first.exclude.object_selector is not None
    assert first.position is not None and first.position.line == 8
    assert second.action is Action.EXEMPT and second.on_explicit is OnExplicit.REWRITE


def test_digest_follows_content_not_formatting() -> None:
    (a,) = load(GOOD)
    (b,) = load(GOOD.replace("  version:", "  # a comment\n  version:"))
    (c,) = load(GOOD.replace("el7", "el8"))
    assert a.digest == b.digest
    assert a.digest != c.digest


def test_several_documents_and_sources_keep_load_order() -> None:
    two = GOOD + "---\n" + GOOD.replace("name: site-rules", "name: more-rules")
    policies = load_policies([("10-a.yaml", two), ("20-b.yaml", GOOD.replace("site-", "other-"))])
    assert [p.name for p in policies] == ["site-rules", "more-rules", "other-rules"]
    assert [p.source for p in policies] == ["10-a.yaml", "10-a.yaml", "20-b.yaml"]


def test_a_directory_is_read_in_file_name_order() -> None:
    policies = load_policies(read_policy_sources([str(FIXTURES)]))
    names = [p.name for p in policies]
    assert names == ["site-rules", "cloud-exemptions", "observe"]
    assert [Path(p.source).name for p in policies] == [
        "10-site.yaml",
        "20-exempt.yaml",
        "30-observe.yaml",
    ]


@pytest.mark.parametrize(
    ("pin", "expected"), [("4.0", "4.0"), ("4.1", "4.1"), ("3", "3"), ('"4.0"', "4.0")]
)
def test_unquoted_pin_is_accepted(pin: str, expected: str) -> None:
    (policy,) = load(with_rule("    action: pin\n", spec_extra=f"  pin: {pin}\n"))
    assert policy.pin == expected


def test_pin_that_cannot_be_pinned_is_refused() -> None:
    (problem,) = problems_of(with_rule("    action: pin\n", spec_extra='  pin: "4.2"\n'))
    assert (problem.position.line, problem.position.column) == (7, 8)
    assert "4.2" in problem.message and "4.0" in problem.message


def test_unknown_key_with_did_you_mean() -> None:
    text = with_rule(
        "    action: pin\n"  # 9
        "    match:\n"  # 10
        "      exprots:\n"  # 11
        "      - server: 192.168.100.7\n"
    )
    (problem,) = problems_of(text, "site.yaml")
    assert str(problem).startswith("site.yaml:11:7: ")
    assert "exprots" in problem.message
    assert "did you mean 'exports'" in problem.message
    assert 'rule "r"' in problem.message


def test_unknown_top_level_and_spec_keys() -> None:
    text = with_rule("    action: pin\n", spec_extra="  unknwonNodes: assumeAffected\n")
    (problem,) = problems_of(text)
    assert (problem.position.line, problem.position.column) == (7, 3)
    assert "did you mean 'unknownNodes'" in problem.message


@pytest.mark.parametrize(
    ("server", "needle"),
    [
        ("10.0.0.0/33", "CIDR"),
        ("10.0.0.1/16", "CIDR"),  # host bits set
        ("999.1.1.1", "IP"),
        ("not a host!", "hostname"),
        ("filer[1-.corp", "glob"),
    ],
)
def test_bad_servers_are_reported_where_they_are(server: str, needle: str) -> None:
    text = with_rule(
        "    action: pin\n"  # 9
        "    match:\n"  # 10
        "      exports:\n"  # 11
        "      - server: 192.168.100.7\n"  # 12
        f"      - server: '{server}'\n"  # 13
    )
    (problem,) = problems_of(text)
    assert problem.position.line == 13, problem
    assert needle in problem.message, problem
    assert server in problem.message


@pytest.mark.parametrize("path", ["data1/k8sdev", "/data1/[k8sdev"])
def test_bad_paths(path: str) -> None:
    text = with_rule(
        "    action: pin\n"
        "    match:\n"
        "      exports:\n"
        f"      - server: 192.168.100.7\n        path: '{path}'\n"  # 12-13
    )
    (problem,) = problems_of(text)
    assert problem.position.line == 12, problem
    assert path in problem.message


def test_bad_provisioner_glob() -> None:
    text = with_rule("    action: pin\n    match:\n      provisioners: ['nfs[.csi']\n")
    (problem,) = problems_of(text)
    assert problem.position.line == 11 and "nfs[.csi" in problem.message


def test_empty_kernel_range() -> None:
    text = with_rule(
        "    action: pin\n"
        "    match:\n"
        "      nodeKernels:\n"  # 11
        "      - {family: el7, min: 3.10.0-1160, below: 3.10.0-957}\n"  # 12
    )
    (problem,) = problems_of(text)
    assert problem.position.line == 12
    assert "empty kernel range" in problem.message


def test_duplicate_rule_names() -> None:
    text = with_rule(
        "    action: pin\n"  # 9
        "  - name: r\n"  # 10
        "    action: warn\n"
    )
    (problem,) = problems_of(text)
    assert (problem.position.line, problem.position.column) == (10, 11)
    assert "duplicate rule name" in problem.message
    assert "policy.yaml:8:11" in problem.message  # where the first one is


def test_duplicate_policy_names_across_files() -> None:
    with pytest.raises(PolicyError) as info:
        load_policies([("a.yaml", GOOD), ("b.yaml", GOOD)])
    (problem,) = info.value.problems
    assert problem.position.file == "b.yaml" and problem.position.line == 4
    assert 'duplicate policy name "site-rules"' in problem.message
    assert "a.yaml:4" in problem.message


def test_yaml_syntax_error_has_a_position() -> None:
    text = GOOD.replace("    action: exempt\n", "    action: exempt: now\n")
    line = GOOD.splitlines().index("    action: exempt") + 1
    (problem,) = problems_of(text, "broken.yaml")
    assert problem.position.file == "broken.yaml"
    assert (problem.position.line, problem.position.column) == (line, 19)
    assert "YAML syntax error" in problem.message
    assert re.match(r"broken\.yaml:\d+:\d+: ", str(problem))


def test_duplicate_yaml_key() -> None:
    text = with_rule("    action: pin\n    action: warn\n")
    (problem,) = problems_of(text)
    assert problem.position.line == 10 and "duplicate key 'action'" in problem.message


def test_numbers_where_strings_belong_say_to_quote() -> None:
    text = with_rule("    action: pin\n").replace('version: "1"', "version: 2026.11")
    (problem,) = problems_of(text)
    assert problem.position.line == 6
    assert "quote it" in problem.message


@pytest.mark.parametrize(
    ("rule_yaml", "line", "needle"),
    [
        ("    action: rewrite\n", 9, "is not one of"),
        ("", 8, "missing required key 'action'"),
        (
            "    action: pin\n    match:\n      objectSelector:\n"
            "        matchExpressions:\n        - {key: a, operator: In}\n",
            13,
            "needs at least one value",
        ),
    ],
)
def test_rule_problems(rule_yaml: str, line: int, needle: str) -> None:
    (problem,) = problems_of(with_rule(rule_yaml))
    assert problem.position.line == line, problem
    assert needle in problem.message


def test_bad_names() -> None:
    text = with_rule("    action: pin\n").replace("name: r", "name: Incident_Rule")
    (problem,) = problems_of(text)
    assert problem.position.line == 8 and "DNS-1123" in problem.message


def test_wrong_kind_and_non_mapping_documents() -> None:
    problems = problems_of(GOOD.replace("kind: NFSMountPolicy", "kind: NFSPolicy") + "---\n- a\n")
    messages = [p.message for p in problems]
    assert any("unknown kind 'NFSPolicy'" in m for m in messages)
    assert any("must be a mapping" in m for m in messages)


def test_every_problem_of_every_file_is_reported_in_order() -> None:
    bad_a = with_rule("    action: pin\n    match:\n      exprots: []\n")
    bad_b = with_rule("    action: nope\n")
    with pytest.raises(PolicyError) as info:
        load_policies([("b.yaml", bad_b), ("a.yaml", bad_a)])
    files = [p.position.file for p in info.value.problems]
    assert files == sorted(files) and set(files) == {"a.yaml", "b.yaml"}
    lines = str(info.value).splitlines()
    assert any("exprots" in line for line in lines) and any("nope" in line for line in lines)
    assert all(re.match(r"[ab]\.yaml:\d+:\d+: ", line) for line in lines)


def test_shipped_policies_load() -> None:
    repo = Path(__file__).resolve().parents[3]
    policies = load_policies(read_policy_sources([str(repo / "policies" / "site-example.yaml")]))
    assert policies and all(p.rules for p in policies)


def test_on_explicit_outside_pin_is_a_warning_and_ignored() -> None:
    text = with_rule("    action: warn\n    onExplicit: deny\n")
    (policy,) = load(text)  # warnings do not stop loading
    assert policy.rules[0].on_explicit is OnExplicit.REWRITE
    problems = loaded([("policy.yaml", text)]).problems
    (warning,) = [p for p in problems if "onExplicit" in p.message]
    assert warning.severity == "warning"
    assert str(warning).startswith("policy.yaml:10:5: warning: ")
