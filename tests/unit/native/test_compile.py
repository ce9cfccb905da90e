"""webhook/native: what `nfsguard policy compile` makes of the shipped and the test
policies, which rules stay webhook-only and why, and the shipped manifests' drift.
The CEL itself is proven on the real kube-apiserver (tests/e2e/test_native.py)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from webhook.cli.common import load_engine
from webhook.cli.main import cli
from webhook.native.compiler import DENY_POLICY, PIN_POLICY, compile_native
from webhook.registration.configuration import WebhookSettings, webhook_configuration

REPO = Path(__file__).resolve().parents[3]
MANIFEST = REPO / "manifests" / "native" / "native-policies.yaml"
E2E_POLICY = REPO / "tests" / "e2e" / "policies" / "native.yaml"

#: What docs/native-policies.md lists for the shipped knowledge base and site example.
SHIPPED_WEBHOOK_ONLY = [
    'webhook-only: rule "flatcar-exchgid4-pnfs-ds" (policy nfsguard-known-issues): nodeKernels: '
    "admission CEL cannot look up Nodes, so node kernels are the webhook's",
    'webhook-only: rule "upstream-6-5-exchgid4-pnfs-ds" (policy nfsguard-known-issues): '
    "nodeKernels: admission CEL cannot look up Nodes, so node kernels are the webhook's",
    'webhook-only: rule "flatcar-5-15-32-mount-hang" (policy nfsguard-known-issues): nodeKernels: '
    "admission CEL cannot look up Nodes, so node kernels are the webhook's",
    'webhook-only: rule "fedora-5-16-trunking-discovery" (policy nfsguard-known-issues): action '
    "warn changes and refuses nothing: its warning and audit record are the webhook's",
    'webhook-only: rule "flatcar-6-6-read-plus" (policy nfsguard-known-issues): action warn '
    "changes and refuses nothing: its warning and audit record are the webhook's",
]


def compiled_manifest() -> str:
    result = CliRunner().invoke(cli, ["policy", "compile", "--policy", str(REPO / "policies")])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_shipped_manifest_is_generated_from_the_shipped_policies() -> None:
    assert MANIFEST.read_text() == compiled_manifest(), (
        "manifests/native/native-policies.yaml drifted from `nfsguard policy compile`: "
        "regenerate with `python tests/unit/native/test_compile.py --write`"
    )


def test_shipped_manifest_holds_the_pin_policy_and_its_binding() -> None:
    # kubernetes-validate has no admissionregistration/v1 MutatingAdmissionPolicy schema:
    # the real kube-apiserver accepts these objects in tests/e2e/test_native.py.
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    assert [d["kind"] for d in docs] == [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    ]
    assert docs[1]["spec"]["policyName"] == docs[0]["metadata"]["name"] == PIN_POLICY
    assert docs[0]["spec"]["mutations"][0]["patchType"] == "JSONPatch"
    assert docs[0]["spec"]["reinvocationPolicy"] == "IfNeeded"


def test_the_shipped_policies_say_exactly_which_rules_stay_webhook_only() -> None:
    native = compile_native(load_engine([str(REPO / "policies")]))
    assert [w.line() for w in native.webhook_only] == SHIPPED_WEBHOOK_ONLY
    assert [(c.policy.name, c.rule.name) for c in native.compiled] == [
        ("nfsguard-known-issues", "azure-files-nfs-exempt"),
        ("nfsguard-known-issues", "azure-files-csi-exempt"),
        ("nfsguard-known-issues", "amazon-efs-exempt"),
        ("nfsguard-known-issues", "amazon-efs-csi-exempt"),
        # outranked by the kernel pins, which do the same (pin 4.0, rewrite) where both match
        ("site-rules", "incident-node003-hang"),
    ]


def test_cli_strict_fails_on_webhook_only_rules_and_names_them() -> None:
    result = CliRunner().invoke(
        cli, ["policy", "compile", "--strict", "-o", "json", "--policy", str(REPO / "policies")]
    )
    assert result.exit_code == 1
    assert "--strict: 5 rules stay webhook-only" in result.stderr
    for line in SHIPPED_WEBHOOK_ONLY:
        assert line in result.stderr
    ok = CliRunner().invoke(cli, ["policy", "compile", "--strict", "--policy", str(E2E_POLICY)])
    assert "webhook-only: rule" in ok.stderr  # warn-everything-else
    assert ok.exit_code == 1


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["policy", "compile", "--policy", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1


def test_e2e_policy_compiles_every_acting_rule() -> None:
    native = compile_native(load_engine([str(E2E_POLICY)]))
    names = {c.rule.name for c in native.compiled}
    assert names == {
        "exempt-lab",
        "exempt-labelled",
        "deny-cidr",
        "deny-audit",
        "pin-export",
        "pin-glob-strict",
        "pin-class",
        "pin-provisioner",
        "pin-v3-team",
        "registration-probe",
    }
    assert {o["metadata"]["name"] for o in native.objects} == {PIN_POLICY, DENY_POLICY}


KERNEL_PIN = """
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: a-kernels}
spec:
  version: "1"
  rules:
  - name: el7
    match: {nodeKernels: [{family: el7}]}
    action: pin
---
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: b-site}
spec:
  version: "1"
  rules:
  - name: same-pin
    match: {exports: [{server: 10.0.0.1}]}
    action: pin
  - name: strict-pin
    match: {exports: [{server: 10.0.0.2}]}
    action: pin
    onExplicit: deny
  - name: deny-later
    match: {exports: [{server: 10.0.0.3}]}
    action: deny
  - name: classy
    match: {exports: [{server: "nfs[12].corp"}]}
    action: pin
"""


def test_a_rule_outranked_by_a_webhook_only_rule_with_another_effect_stays_webhook_only(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.yaml").write_text(KERNEL_PIN)
    native = compile_native(load_engine([str(tmp_path / "p.yaml")]))
    compiled = [c.rule.name for c in native.compiled]
    # deny outranks every pin: the kernel pin never decides where it matches
    assert compiled == ["deny-later", "same-pin"]
    reasons = {w.rule: w.reason for w in native.webhook_only}
    assert reasons["el7"].startswith("nodeKernels")
    assert reasons["strict-pin"].startswith('outranked by webhook-only rule "el7"')
    assert "character class" in reasons["classy"]


ODD = REPO / "tests" / "e2e" / "policies" / "native-odd.yaml"


def test_addresses_the_apiservers_ip_library_refuses_stay_webhook_only() -> None:
    """ip()/cidr() of an IPv4-mapped IPv6 address or a zone is a CEL compile error: the
    apiserver then ignores the whole MutatingAdmissionPolicy (seen on 1.36.3, failurePolicy
    Fail notwithstanding), so such a rule must never be compiled."""
    native = compile_native(load_engine([str(ODD)]))
    assert [c.rule.name for c in native.compiled] == ["plain-v6-net", "odd-glob"]
    reasons = {w.rule: w.reason for w in native.webhook_only}
    assert set(reasons) == {"mapped-ip", "mapped-net", "zoned-ip"}
    for rule in ("mapped-ip", "mapped-net"):
        assert "IPv4-mapped" in reasons[rule]
    assert "zone" in reasons["zoned-ip"]


def test_no_expression_or_message_holds_a_control_character() -> None:
    """A version with a line break or a tab: every CEL literal escapes it (the apiserver
    refuses a raw line break in one, 422), and the denial message names the version on
    one line (a message with a line break is not shown)."""
    native = compile_native(load_engine([str(ODD)]))
    text = json.dumps(native.objects)
    for obj in native.objects:
        for expr in _expressions(obj):
            assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in expr), expr
    assert "version line one line two tabbed" in text  # the message, on one line


def _expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expression", "messageExpression") and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


ACCEPTANCE = REPO / "tests" / "e2e" / "policies" / "native-acceptance"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_names_are_dns_names_and_stable_across_compiles() -> None:
    """The same policies compile to the same objects, byte for byte (a GitOps diff shows
    only real changes), under fixed DNS-1123 names that kubectl apply can update."""
    for source in (REPO / "policies", E2E_POLICY, ACCEPTANCE):
        first = compile_native(load_engine([str(source)])).objects
        second = compile_native(load_engine([str(source)])).objects
        assert json.dumps(first) == json.dumps(second)
        for obj in first:
            name = obj["metadata"]["name"]
            assert len(name) <= 253 and _DNS_SUBDOMAIN.match(name), name
            assert name in (PIN_POLICY, DENY_POLICY)
            if obj["kind"].endswith("Binding"):
                assert obj["spec"]["policyName"] == name


def test_native_objects_carry_the_webhooks_scope() -> None:
    """The MAP and VAP see exactly what the webhook is sent: the same matchConditions,
    rules and opt-out label as `nfsguard webhook-config` writes for the same policies."""
    engine = load_engine([str(ACCEPTANCE)])
    webhook = webhook_configuration(engine, WebhookSettings())["webhooks"][0]
    for obj in compile_native(engine).objects:
        if obj["kind"].endswith("Binding"):
            continue
        assert obj["spec"]["matchConditions"] == webhook["matchConditions"]
        assert obj["spec"]["matchConstraints"]["objectSelector"] == webhook["objectSelector"]
        assert obj["spec"]["matchConstraints"]["resourceRules"] == webhook["rules"]


WARN_ONLY = {
    "apiVersion": "nfsguard.io/v1alpha1",
    "kind": "NFSMountPolicy",
    "metadata": {"name": "warn-only"},
    "spec": {
        "version": "1",
        "rules": [{"name": "just-warn", "match": {"exports": [{"server": "*"}]}, "action": "warn"}],
    },
}


def test_a_compile_with_nothing_to_enforce_says_so(tmp_path: Path) -> None:
    """No compiled rule pins or denies: no objects, and stderr says so (an empty stream
    given to kubectl apply is an error there, not here)."""
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(WARN_ONLY))
    result = CliRunner().invoke(cli, ["policy", "compile", "--policy", str(tmp_path)])
    assert result.exit_code == 0
    assert list(yaml.safe_load_all(result.stdout)) == []
    assert result.stderr.splitlines()[0] == (
        "no native policy objects: no compiled rule pins or denies"
    )


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    MANIFEST.write_text(compiled_manifest())
