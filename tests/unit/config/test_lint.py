"""`nfsguard policy lint`: every class of problem, with its exact message and FILE:LINE:COL.

The command runs in-process through click (the real command, real files); an
exception other than the exit (a traceback the user would see) fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import load_policies, nfsguard

REPO = Path(__file__).resolve().parents[3]

HEAD = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: site
spec:
  version: "1"
  rules:
"""  # rules start on line 8


def lint(tmp_path: Path, files: dict[str, str], *args: str) -> tuple[int, list[str]]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    paths = [str(tmp_path / n) for n in files] if files else []
    result = nfsguard("policy", "lint", *paths, *args)
    return result.exit_code, result.output.splitlines()


def one_error(tmp_path: Path, rules: str, head: str = HEAD) -> str:
    """The single problem line of a policy with ``rules``, FILE replaced by ``F``."""
    code, lines = lint(tmp_path, {"p.yaml": head + rules})
    assert code == 1, lines
    assert lines[-1] == "1 error, 0 warnings", lines
    assert len(lines) == 2, lines
    return lines[0].replace(str(tmp_path / "p.yaml"), "F")


def test_clean_policies_print_one_summary_line(tmp_path: Path) -> None:
    rules = """\
  - name: pin-filer
    match:
      exports:
      - server: 10.20.0.0/16
        path: /exports/**
    action: pin
  - name: warn-lab
    match:
      exports: [{server: "*.lab.example"}]
    action: warn
"""
    other = HEAD.replace("name: site", "name: other") + (
        "  - name: exempt-azure\n    match:\n      exports:\n"
        '      - server: "*.file.core.windows.net"\n    action: exempt\n'
    )
    code, lines = lint(tmp_path, {"a.yaml": HEAD + rules, "b.yaml": other})
    assert (code, lines) == (0, ["2 policies, 3 rules: OK"])


def test_the_shipped_policies_are_clean_even_strict() -> None:
    # The GitOps example's first step (docs/policy-authoring.md): its three unsafe-pin
    # warnings are acknowledged on the rules (lint: {ignore: [unsafe-pin]}).
    result = nfsguard("policy", "lint", "--strict", str(REPO / "policies"))
    assert (result.exit_code, result.output) == (0, "2 policies, 10 rules: OK\n")


def test_one_warning_is_acknowledged_on_its_rule_and_only_there(tmp_path: Path) -> None:
    rules = (
        "  - name: audit-all\n"  # 8
        "    action: audit\n"
        "    lint: {ignore: [empty-match]}\n"
        "  - name: warn-x\n"  # 11
        "    match: {storageClassNames: [x]}\n"
        "    action: warn\n"
        "    lint: {ignore: [empty-match]}\n"  # not this rule's warning: nothing to drop
        "  - name: warn-x-again\n"  # 15
        "    match: {storageClassNames: [x]}\n"
        "    action: warn\n"
        "    lint: {ignore: [shadowed]}\n"
        "  - name: all-again\n"  # 19
        "    action: audit\n"
    )
    code, lines = lint(tmp_path, {"p.yaml": HEAD + rules}, "--strict")
    f = f"{tmp_path}/p.yaml"
    assert code == 1
    assert lines == [
        f'{f}:19:5: warning: rule "all-again": match is empty, so this audit rule applies '
        "to every NFS object in scope [empty-match]",
        f'{f}:19:5: warning: rule "all-again": same match, exclude and action as rule '
        '"audit-all", which comes first: this rule never decides [shadowed]',
        "0 errors, 2 warnings",
    ]


def test_lint_ignore_names_only_known_warnings(tmp_path: Path) -> None:
    line = one_error(tmp_path, "  - name: r\n    action: audit\n    lint: {ignore: [typo]}\n")
    assert line.startswith('F:10:21: rule "r": '), line
    assert "'typo'" in line and "unsafe-pin" in line, line


def _git(repo: Path, *args: str) -> None:
    import subprocess

    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
    )


def test_content_changed_under_the_same_version_warns(tmp_path: Path) -> None:
    rules = "  - name: r\n    match: {storageClassNames: [x]}\n    action: warn\n"
    policy = tmp_path / "p.yaml"
    policy.write_text(HEAD + rules)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "p.yaml")
    _git(tmp_path, "commit", "-qm", "v1")
    before = load_policies([(str(policy), policy.read_text())])[0].digest
    policy.write_text(HEAD + rules.replace("action: warn", "action: deny"))
    warning = f'{policy}:1:1: warning: policy "site": content changed ({before[:19]} -> '
    forms = (
        ("--previous-ref", "HEAD"),
        ("--previous", "HEAD"),  # a git ref
        ("--previous", f"site@1={before}"),
        ("--previous", f"site={before}"),  # the digest of the current spec.version
        ("--previous", before),  # the same, with one policy loaded
    )
    for args in forms:
        result = nfsguard("policy", "lint", "--strict", *args, str(policy))
        lines = result.output.splitlines()
        assert result.exit_code == 1, lines
        assert lines[0].startswith(warning) and lines[0].endswith(
            "but spec.version is still '1': bump it, so records of the two contents can be "
            "told apart [version-unchanged]"
        ), lines
        assert lines[1] == "0 errors, 1 warning"
    # Bumped: clean; unchanged content: clean; a ref that is not a commit: exit 2.
    policy.write_text(HEAD.replace('version: "1"', 'version: "2"') + rules.replace("warn", "deny"))
    assert (
        nfsguard("policy", "lint", "--strict", "--previous-ref", "HEAD", str(policy)).exit_code == 0
    )
    _git(tmp_path, "checkout", "-q", "p.yaml")
    assert (
        nfsguard("policy", "lint", "--strict", "--previous-ref", "HEAD", str(policy)).exit_code == 0
    )
    bad = nfsguard("policy", "lint", "--previous-ref", "no-such-ref", str(policy))
    assert (bad.exit_code, bad.output) == (
        2,
        "nfsguard: --previous-ref 'no-such-ref': not a git commit\n",
    )
    bad = nfsguard("policy", "lint", "--previous", "site=sha256:00", str(policy))
    assert bad.exit_code == 2
    assert bad.output == (
        "nfsguard: --previous 'site=sha256:00': expected NAME@VERSION=sha256:<64 hex>\n"
    )
    # the same digest as now: nothing changed; another policy's name: not compared
    now = load_policies([(str(policy), policy.read_text())])[0].digest
    assert nfsguard("policy", "lint", "--strict", "--previous", now, str(policy)).exit_code == 0
    other = nfsguard("policy", "lint", "--strict", "--previous", f"other={before}", str(policy))
    assert other.exit_code == 0


def test_shipped_schema_copy_is_identical() -> None:
    for name in ("nfsmountpolicy.schema.json", "nfspolicytest.schema.json"):
        shipped = (REPO / "policies" / "schema" / name).read_text()
        packaged = (REPO / "webhook" / "data" / name).read_text()
        assert shipped == packaged, name
        assert json.loads(shipped)["$schema"].startswith("https://json-schema.org/")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    assert one_error(tmp_path, "  - name: a\n    action: [pin\n") == (
        "F:10:1: YAML syntax error: expected ',' or ']', but got '<stream end>'"
    )


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    rules = "  - name: a\n    match:\n      exports: [{server: 10.0.0.1}]\n"
    rules += "    action: pin\n    action: warn\n"
    assert one_error(tmp_path, rules) == "F:12:5: duplicate key 'action'"


def test_unknown_key_names_the_rule_and_suggests(tmp_path: Path) -> None:
    rules = "  - name: incident\n    match:\n      exprots:\n      - server: 10.0.0.1\n"
    rules += "    action: pin\n"
    assert one_error(tmp_path, rules) == (
        "F:10:7: rule \"incident\": unknown key 'exprots' in spec.rules[0].match "
        "(did you mean 'exports'?)"
    )


def test_duplicate_rule_name(tmp_path: Path) -> None:
    rules = "  - name: a\n    match: {storageClassNames: [x]}\n    action: pin\n"
    rules += "  - name: a\n    match: {storageClassNames: [y]}\n    action: warn\n"
    assert one_error(tmp_path, rules) == (
        'F:11:11: rule "a": duplicate rule name (first defined at F:8:11)'
    )


def test_duplicate_policy_name_across_files(tmp_path: Path) -> None:
    rules = "  - name: a\n    match: {storageClassNames: [x]}\n    action: pin\n"
    code, lines = lint(tmp_path, {"a.yaml": HEAD + rules, "b.yaml": HEAD + rules})
    assert code == 1
    assert lines == [
        f'{tmp_path}/b.yaml:4:9: duplicate policy name "site" (first defined at '
        f"{tmp_path}/a.yaml:4:9)",
        "1 error, 0 warnings",
    ]


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("10.0.0.1/16", "invalid CIDR '10.0.0.1/16': 10.0.0.1/16 has host bits set"),
        ("10.0.0.0/33", "invalid CIDR '10.0.0.0/33': '10.0.0.0/33' does not appear to be"),
        ("192.168.1.300", "invalid IP address '192.168.1.300'"),
        ('"nfs[1.corp"', "invalid server glob 'nfs[1.corp': unclosed '[' in glob 'nfs[1.corp'"),
        ("nfs_server..corp", "invalid hostname 'nfs_server..corp'"),
    ],
)
def test_invalid_servers(tmp_path: Path, server: str, message: str) -> None:
    rules = f"  - name: r\n    match:\n      exports:\n      - server: {server}\n"
    rules += "    action: pin\n"
    line = one_error(tmp_path, rules)
    assert line.startswith(f'F:11:9: rule "r": {message}'), line


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/data/[abc", "invalid path glob '/data/[abc': unclosed '[' in glob '/data/[abc'"),
        ("data/**", "export path 'data/**' must be absolute (start with '/')"),
    ],
)
def test_invalid_path_globs(tmp_path: Path, path: str, message: str) -> None:
    rules = "  - name: r\n    match:\n      exports:\n      - server: 10.0.0.1\n"
    rules += f"        path: {path}\n    action: pin\n"
    assert one_error(tmp_path, rules) == f'F:11:9: rule "r": {message}'


def test_invalid_provisioner_glob(tmp_path: Path) -> None:
    rules = '  - name: r\n    match:\n      provisioners: ["nfs.[csi"]\n    action: pin\n'
    assert one_error(tmp_path, rules) == (
        "F:10:22: rule \"r\": invalid glob 'nfs.[csi': unclosed '[' in glob 'nfs.[csi'"
    )


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        (
            "family: el7\n        min: 3.10.0-957\n        below: 3.10.0-862",
            "empty kernel range: min 3.10.0-957 >= below 3.10.0-862",
        ),
        (
            "min: 5.15.136\n        below: 5.15.136-flatcar",
            "empty kernel range: min 5.15.136 >= below 5.15.136-flatcar",
        ),
        ("min: flatcar", "kernel min 'flatcar' is not a version: it must start with a number"),
        (
            "family: el7.x86_64",
            "kernel family 'el7.x86_64' must be one non-empty component without "
            "'.', '-', '_' or '+'",
        ),
    ],
)
def test_empty_inverted_or_invalid_kernel_ranges(tmp_path: Path, kernel: str, message: str) -> None:
    rules = f"  - name: k\n    match:\n      nodeKernels:\n      - {kernel}\n    action: pin\n"
    assert one_error(tmp_path, rules) == f'F:11:9: rule "k": {message}'


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        ('"4.2"', "spec.pin: '4.2' is not a version nfsguard can pin (supported: 3, 4.0, 4.1)"),
        ("4.2", "spec.pin: '4.2' is not a version nfsguard can pin (supported: 3, 4.0, 4.1)"),
        ("4", "spec.pin: '4' is not a version nfsguard can pin (supported: 3, 4.0, 4.1)"),
    ],
)
def test_unsupported_pin(tmp_path: Path, pin: str, message: str) -> None:
    head = HEAD.replace('  version: "1"\n', f'  version: "1"\n  pin: {pin}\n')
    rules = "  - name: r\n    match: {storageClassNames: [x]}\n    action: pin\n"
    assert one_error(tmp_path, rules, head) == f"F:7:8: {message}"


def test_schema_errors_name_the_rule(tmp_path: Path) -> None:
    rules = "  - name: r\n    match: {storageClassNames: [x]}\n    action: pinn\n"
    assert one_error(tmp_path, rules) == (
        "F:10:13: rule \"r\": spec.rules[0].action: 'pinn' is not one of: "
        "pin, deny, warn, audit, exempt"
    )
    head = HEAD.replace('version: "1"', "version: 2026.1")
    rules = "  - name: r\n    match: {storageClassNames: [x]}\n    action: pin\n"
    assert one_error(tmp_path, rules, head) == (
        "F:6:12: spec.version must be a string (quote it: YAML read 2026.1 as a number)"
    )


def test_unknown_kind(tmp_path: Path) -> None:
    text = HEAD.replace("kind: NFSMountPolicy", "kind: NFSMountPolicies") + "    []\n"
    code, lines = lint(tmp_path, {"p.yaml": text})
    assert code == 1
    assert lines[0].startswith(
        f"{tmp_path}/p.yaml:2:7: unknown kind 'NFSMountPolicies' (expected NFSMountPolicy"
    ), lines


def test_every_problem_of_a_file_is_reported_in_order(tmp_path: Path) -> None:
    text = HEAD.replace('version: "1"', "version: 1") + (
        "  - name: typo\n"  # 8
        "    match:\n"
        "      exprots: []\n"  # 10
        "    action: pin\n"
        "  - name: cidr\n"  # 12
        "    match:\n"
        "      exports:\n"
        "      - server: 10.0.0.1/8\n"  # 15
        "      nodeKernels:\n"
        "      - {min: '6.6', below: '6.5'}\n"  # 17
        "    action: pin\n"
        "  - name: cidr\n"  # 19
        "    action: warn\n"
        "    onExplicit: deny\n"  # 21
    )
    code, lines = lint(tmp_path, {"p.yaml": text})
    f = f"{tmp_path}/p.yaml"
    assert code == 1
    assert lines == [
        f"{f}:6:12: spec.version must be a string (quote it: YAML read 1 as a number)",
        f"{f}:10:7: rule \"typo\": unknown key 'exprots' in spec.rules[0].match "
        "(did you mean 'exports'?)",
        f"{f}:15:9: rule \"cidr\": invalid CIDR '10.0.0.1/8': 10.0.0.1/8 has host bits set",
        f'{f}:17:9: rule "cidr": empty kernel range: min 6.6 >= below 6.5',
        f'{f}:19:5: warning: rule "cidr": match is empty, so this warn rule applies to '
        "every NFS object in scope [empty-match]",
        f'{f}:19:11: rule "cidr": duplicate rule name (first defined at {f}:12:11)',
        f'{f}:21:5: warning: rule "cidr": onExplicit applies only to action pin (ignored for warn) '
        "[unused-on-explicit]",
        "5 errors, 2 warnings",
    ]


def test_warnings_do_not_fail_unless_strict(tmp_path: Path) -> None:
    rules = (
        "  - name: audit-all\n"  # 8
        "    action: audit\n"
        "  - name: warn-x\n"  # 10
        "    match: {storageClassNames: [x]}\n"
        "    exclude: {}\n"  # 12
        "    action: warn\n"
        "    onExplicit: rewrite\n"  # 14
        "  - name: warn-x-again\n"  # 15
        "    match: {storageClassNames: [x]}\n"
        "    exclude: {}\n"
        "    action: warn\n"
    )
    files = {"p.yaml": HEAD + rules}
    code, lines = lint(tmp_path, files)
    f = f"{tmp_path}/p.yaml"
    expected = [
        f'{f}:8:5: warning: rule "audit-all": match is empty, so this audit rule applies '
        "to every NFS object in scope [empty-match]",
        f'{f}:12:5: warning: rule "warn-x": exclude is empty and excludes nothing [empty-exclude]',
        f'{f}:14:5: warning: rule "warn-x": onExplicit applies only to action pin '
        "(ignored for warn) [unused-on-explicit]",
        f'{f}:15:5: warning: rule "warn-x-again": same match, exclude and action as rule '
        '"warn-x", which comes first: this rule never decides [shadowed]',
        f'{f}:17:5: warning: rule "warn-x-again": exclude is empty and excludes nothing '
        "[empty-exclude]",
    ]
    assert code == 0
    assert lines == [*expected, "1 policy, 3 rules: OK (5 warnings)"]
    code, lines = lint(tmp_path, files, "--strict")
    assert code == 1
    assert lines == [*expected, "0 errors, 5 warnings"]


def test_policy_without_rules_is_a_warning(tmp_path: Path) -> None:
    code, lines = lint(tmp_path, {"p.yaml": HEAD + "    []\n"})
    assert (code, lines) == (
        0,
        [
            f'{tmp_path}/p.yaml:1:1: warning: policy "site" has no rules [no-rules]',
            "1 policy, 0 rules: OK (1 warning)",
        ],
    )


def test_missing_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = nfsguard("policy", "lint", str(tmp_path / "nope.yaml"))
    assert (proc.exit_code, proc.stdout) == (2, "")
    assert proc.stderr == f"{tmp_path}/nope.yaml: no such file or directory\n"


def test_file_not_utf8_is_a_lint_error_at_its_byte(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_bytes(b"a: 1\nb: \xff\xfe not utf-8\n")
    proc = nfsguard("policy", "lint", str(tmp_path / "p.yaml"))
    assert (proc.exit_code, proc.stderr) == (1, "")
    assert proc.stdout.splitlines() == [
        f"{tmp_path}/p.yaml:2:4: not UTF-8: invalid start byte (byte 0xff)",
        "1 error, 0 warnings",
    ]


def test_binary_garbage_and_odd_documents_never_traceback(tmp_path: Path) -> None:
    files = {
        "a.yaml": "- just\n- a list\n",
        "b.yaml": "!!python/object:os.system {}\n",
        "c.yaml": "apiVersion: nfsguard.io/v1alpha1\nkind: NFSMountPolicy\nspec: 3\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = nfsguard("policy", "lint", str(tmp_path))
    assert proc.exit_code == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{tmp_path}/a.yaml:1:1: a policy document must be a mapping"
    # the tag is never constructed: the document is an empty mapping of no known kind
    assert lines[1].startswith(f"{tmp_path}/b.yaml:1:1: unknown kind None (expected ")
    assert lines[2:] == [
        f"{tmp_path}/c.yaml:1:1: document: missing required key 'metadata'",
        f"{tmp_path}/c.yaml:3:7: spec must be a mapping",
        "4 errors, 0 warnings",
    ]


def test_test_suites_named_to_lint_are_checked_as_policy_test_reads_them(tmp_path: Path) -> None:
    rules = "  - name: a\n    match: {exports: [{server: 10.0.0.1}]}\n    action: pin\n"
    suite = (
        "apiVersion: nfsguard.io/v1alpha1\n"
        "kind: NFSPolicyTest\n"
        "spec:\n"
        "  policies: [p.yaml]\n"
        "  cases:\n"
        "  - name: c\n"  # 6
        "    object: {kind: StorageClass}\n"
        "    expect: {outcome: mutated}\n"
    )
    code, lines = lint(tmp_path, {"p.yaml": HEAD + rules, "suite.yaml": suite})
    assert (code, lines) == (0, ["1 policy, 1 rule, 1 test suite: OK"])
    bad = suite.replace("{outcome: mutated}", "{outcome: mutated, objectFile: gone.yaml}")
    bad = bad.replace("  - name: c\n", "  - name: c\n    expected: {}\n")
    code, lines = lint(tmp_path, {"p.yaml": HEAD + rules, "suite.yaml": bad})
    assert code == 1
    assert lines == [
        f"{tmp_path}/suite.yaml:7: unknown key 'expected' in spec.cases[0] (allowed: "
        "description, expect, name, nodes, object, objectFile, oldObject, oldObjectFile, "
        "operation, select)",
        "1 error, 0 warnings",
    ]
