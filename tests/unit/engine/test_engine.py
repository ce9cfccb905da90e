"""The policy engine (webhook/engine/engine.py) over real policy text and real
objects: actions, precedence, where options live, matching, node kernels, decisions.

(Over 400 lines: one test per rule of policy-language.md; split by topic below.)

Every patch is applied with jsonpatch and the result checked against the invariant of
policy-language.md: the option string the node will mount with holds exactly one
version option, ``nfsvers=<pin>``, and no other place on the object holds one.
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import pytest

from tests.fixtures import samples
from tests.support import engine_for
from webhook.api.decision import Action, Decision, Outcome
from webhook.api.kube import Operation
from webhook.api.target import InvalidObject
from webhook.engine.engine import Engine
from webhook.nfs.inventory import StaticInventory, UnknownInventory
from webhook.nfs.options import effective_version, is_version_option, split_options
from webhook.nfs.scope import Node

LEGACY = "volume.beta.kubernetes.io/mount-options"
SERVER = "192.168.100.7"
EXPORT = "/data1/k8sdev/hl"

# -- building policies and objects --------------------------------------------------------


def policy(name: str, rules: str, *, version: str = "2026.11.27-1", extra_spec: str = "") -> str:
    """A policy document; ``rules`` is the YAML of the rules list, indented by 2."""
    return (
        "apiVersion: nfsguard.io/v1alpha1\n"
        "kind: NFSMountPolicy\n"
        f"metadata:\n  name: {name}\n"
        f'spec:\n  version: "{version}"\n'
        f"{extra_spec}"
        f"  rules:\n{rules}"
    )


def rule(name: str, action: str, match: str = "", extra: str = "") -> str:
    """One rule; ``match`` is the YAML of the match mapping, indented by 6."""
    text = f"  - name: {name}\n    action: {action}\n"
    if match:
        text += f"    match:\n{match}"
    return text + extra


INCIDENT_MATCH = f"      exports:\n      - server: {SERVER}\n        path: /data1/k8sdev/**\n"


def engine(*docs: str) -> Engine:
    """Policies loaded in the order given (file names sort the same way)."""
    return engine_for([(f"{i:02d}-policy.yaml", d) for i, d in enumerate(docs)])


# The shared builders (tests/fixtures/samples.py), with this file's defaults: every CSI
# PV is named pv-nfs and mounts the incident's export.
pv = samples.pv
csi_pv = functools.partial(samples.csi_pv, "pv-nfs", subdir="k8sdev/hl")
storage_class = samples.storage_class


# -- the invariant ---------------------------------------------------------------------


def _csi_mount_options(obj: Mapping[str, Any]) -> str | None:
    """csi-driver-nfs appends the value of every key matching ``mountoptions``
    case-insensitively (nodeserver.go NodePublishVolume)."""
    attrs = ((obj.get("spec") or {}).get("csi") or {}).get("volumeAttributes") or {}
    values = [str(v) for k, v in attrs.items() if k.lower() == "mountoptions" and v]
    return ",".join(values) if values else None


def node_option_string(obj: Mapping[str, Any]) -> str:
    """What kubelet (and csi-driver-nfs) would mount with, computed independently."""
    if obj["kind"] == "StorageClass":
        return ",".join(obj.get("mountOptions") or [])
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if LEGACY in annotations:
        parts = [annotations[LEGACY]]
    else:
        parts = list(obj["spec"].get("mountOptions") or [])
    csi = _csi_mount_options(obj)
    if csi is not None:
        parts.append(csi)
    return ",".join(parts)


def other_places(obj: Mapping[str, Any]) -> list[str]:
    """Option places the node does not read (spec.mountOptions under the annotation)."""
    if obj["kind"] == "StorageClass":
        return []
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if LEGACY in annotations:
        return list(obj["spec"].get("mountOptions") or [])
    return []


def assert_pinned(obj: Mapping[str, Any], pin: str = "4.0") -> None:
    versions = [o for o in node_option_string(obj).split(",") if is_version_option(o)]
    assert versions == [f"nfsvers={pin}"], node_option_string(obj)
    assert not any(is_version_option(o) for o in split_options(other_places(obj))), obj


def apply(obj: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The object after the decision's patch, applied the way the apiserver does."""
    before = copy.deepcopy(dict(obj))
    patched: dict[str, Any] = jsonpatch.JsonPatch(list(decision.patch)).apply(before)
    return patched


def decide_and_apply(
    eng: Engine, obj: dict[str, Any], operation: Operation = "CREATE", **kw: Any
) -> tuple[Decision, dict[str, Any]]:
    original = copy.deepcopy(obj)
    decision = eng.decide(obj, operation=operation, **kw)
    assert obj == original, "the engine must not modify the object it was given"
    return decision, apply(obj, decision)


def assert_reinvocation_is_quiet(eng: Engine, patched: dict[str, Any], **kw: Any) -> None:
    again = eng.decide(patched, **kw)
    assert again.patch == ()
    assert again.allowed
    assert again.outcome is Outcome.COMPLIANT, again


def assert_warning_ok(text: str) -> None:
    assert len(text) < 120, text
    assert text.isprintable(), text


# -- each action -------------------------------------------------------------------------

ALL_ACTIONS = ["exempt", "deny", "pin", "warn", "audit"]


def test_pin_rewrites_and_says_so() -> None:
    eng = engine(policy("site-rules", rule("incident-node003-hang", "pin", INCIDENT_MATCH)))
    obj = pv(mount_options=["vers=4.2", "hard"])
    decision, patched = decide_and_apply(eng, obj)
    assert decision.outcome is Outcome.MUTATED and decision.allowed
    assert decision.patch == (
        {"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0", "hard"]},
    )
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0", "hard"]
    assert_pinned(patched)
    assert len(decision.warnings) == 1
    (warning,) = decision.warnings
    assert_warning_ok(warning)
    assert "nfsvers=4.0" in warning and "incident-node003-hang" in warning
    assert_reinvocation_is_quiet(eng, patched)


def test_deny_names_rule_and_policy_version_and_how_to_comply() -> None:
    eng = engine(
        policy("site-rules", rule("no-42-here", "deny", INCIDENT_MATCH), version="7.3-rc1")
    )
    decision, patched = decide_and_apply(eng, pv(mount_options=["nfsvers=4.2"]))
    assert decision.outcome is Outcome.DENIED and not decision.allowed
    assert decision.patch == ()
    assert patched == pv(mount_options=["nfsvers=4.2"])
    assert "no-42-here" in decision.message
    assert "7.3-rc1" in decision.message
    assert "nfsvers=4.0" in decision.message
    assert "\n" not in decision.message
    # a compliant object passes a deny rule
    ok = eng.decide(pv(mount_options=["nfsvers=4.0"]))
    assert ok.allowed and ok.outcome is Outcome.COMPLIANT


def test_warn_allows_unchanged_with_a_warning() -> None:
    eng = engine(policy("p", rule("risky", "warn", INCIDENT_MATCH)))
    decision = eng.decide(pv())
    assert decision.outcome is Outcome.WARNED and decision.allowed
    assert decision.patch == ()
    assert len(decision.warnings) == 1
    assert_warning_ok(decision.warnings[0])
    assert "risky" in decision.warnings[0]


def test_audit_allows_unchanged_silently_but_recorded() -> None:
    eng = engine(policy("p", rule("watch", "audit", INCIDENT_MATCH)))
    decision = eng.decide(pv())
    assert decision.outcome is Outcome.AUDITED and decision.allowed
    assert decision.patch == () and decision.warnings == ()
    assert decision.recorded


def test_exempt_allows_unchanged_and_is_recorded() -> None:
    eng = engine(policy("p", rule("azure", "exempt", INCIDENT_MATCH)))
    decision = eng.decide(pv(mount_options=["vers=4.1"]))
    assert decision.outcome is Outcome.EXEMPT and decision.allowed
    assert decision.patch == () and decision.warnings == ()
    assert decision.recorded


# -- precedence ------------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(ALL_ACTIONS)))
def test_precedence_exempt_deny_pin_warn_audit(order: tuple[str, ...]) -> None:
    expected_outcomes = {
        "exempt": Outcome.EXEMPT,
        "deny": Outcome.DENIED,
        "pin": Outcome.MUTATED,
        "warn": Outcome.WARNED,
        "audit": Outcome.AUDITED,
    }
    for present in range(len(ALL_ACTIONS)):
        # drop the strongest actions one by one: the next strongest decides
        allowed = set(ALL_ACTIONS[present:])
        kept = [a for a in order if a in allowed]
        rules = "".join(rule(f"r-{action}", action, INCIDENT_MATCH) for action in kept)
        eng = engine(policy("p", rules))
        decision = eng.decide(pv())
        winner = ALL_ACTIONS[present]
        assert decision.deciding is not None
        assert decision.deciding.rule == f"r-{winner}"
        assert decision.deciding.action is Action(winner)
        assert decision.outcome is expected_outcomes[winner]
        # every matching rule is reported, in load order
        assert [r.rule for r in decision.matched] == [f"r-{a}" for a in kept]


def test_first_in_load_order_decides_among_equals() -> None:
    first = policy("a-first", rule("pin-40", "pin", INCIDENT_MATCH))
    second = policy("b-second", rule("pin-41", "pin", INCIDENT_MATCH), extra_spec='  pin: "4.1"\n')
    decision, patched = decide_and_apply(engine(first, second), pv())
    assert decision.deciding is not None and decision.deciding.rule == "pin-40"
    assert_pinned(patched, "4.0")
    assert [r.policy for r in decision.matched] == ["a-first", "b-second"]
    decision, patched = decide_and_apply(engine(second, first), pv())
    assert decision.deciding is not None and decision.deciding.rule == "pin-41"
    assert_pinned(patched, "4.1")
    # within one policy: rule order
    two = policy("p", rule("warn-a", "warn", INCIDENT_MATCH) + rule("warn-b", "warn", ""))
    decision = engine(two).decide(pv())
    assert decision.deciding is not None and decision.deciding.rule == "warn-a"
    assert [r.rule for r in decision.matched] == ["warn-a", "warn-b"]


def test_safe_objects_are_never_changed_whatever_matches() -> None:
    rules = "".join(rule(f"r-{a}", a, INCIDENT_MATCH) for a in ("deny", "pin", "warn", "audit"))
    eng = engine(policy("p", rules))
    for options in (["nfsvers=4.0"], ["vers=4", "minorversion=0"], ["v3"], ["nfsvers=3"]):
        decision = eng.decide(pv(mount_options=options))
        assert decision.outcome is Outcome.COMPLIANT, options
        assert decision.allowed and decision.patch == () and decision.warnings == ()
        assert not decision.recorded
        assert decision.before is not None and not decision.before.affected
        # the matching rules are still reported
        assert len(decision.matched) == 4


def test_unmatched_object_is_allowed_untouched() -> None:
    eng = engine(policy("p", rule("r", "pin", INCIDENT_MATCH)))
    decision = eng.decide(pv(server="10.1.1.1"))
    assert decision.outcome is Outcome.UNMATCHED
    assert decision.allowed and decision.patch == () and decision.matched == ()
    assert not decision.recorded


# -- where options live ------------------------------------------------------------------

PIN_ALL = policy("p", rule("pin-all", "pin"))


@pytest.mark.parametrize(
    ("mount_options", "expected_op"),
    [
        (None, {"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]}),
        ([], {"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]}),
        (
            ["hard", "nfsvers=4.1,timeo=600"],
            {
                "op": "replace",
                "path": "/spec/mountOptions",
                "value": ["hard", "nfsvers=4.0,timeo=600"],
            },
        ),
        (
            ["vers=4", "minorversion=1", "hard"],
            {"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0", "hard"]},
        ),
        (
            ["vers=4.1", "nfsvers=4.0"],
            {"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]},
        ),
    ],
)
def test_spec_mount_options(mount_options: list[str] | None, expected_op: dict[str, Any]) -> None:
    eng = engine(PIN_ALL)
    decision, patched = decide_and_apply(eng, pv(mount_options=mount_options))
    assert decision.patch == (expected_op,)
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)


def test_legacy_annotation_wins_and_receives_the_pin() -> None:
    eng = engine(PIN_ALL)
    obj = pv(
        annotations={LEGACY: "vers=4.2,hard"},
        mount_options=["nfsvers=4.1", "timeo=600"],
    )
    decision, patched = decide_and_apply(eng, obj)
    assert decision.outcome is Outcome.MUTATED
    assert patched["metadata"]["annotations"][LEGACY] == "nfsvers=4.0,hard"
    assert patched["spec"]["mountOptions"] == ["timeo=600"]
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)
    ops = {op["path"]: op for op in decision.patch}
    assert ops["/metadata/annotations/volume.beta.kubernetes.io~1mount-options"]["op"] == "replace"


def test_legacy_annotation_decides_the_version() -> None:
    eng = engine(PIN_ALL)
    # the node reads the annotation: 4.0 there is safe, whatever spec.mountOptions says
    safe = pv(annotations={LEGACY: "nfsvers=4.0"}, mount_options=["vers=4.2"])
    assert eng.decide(safe).outcome is Outcome.COMPLIANT
    # and an annotation without a version is negotiated, even under a 4.0 in spec
    obj = pv(annotations={LEGACY: "hard"}, mount_options=["nfsvers=4.0"])
    decision, patched = decide_and_apply(eng, obj)
    assert decision.outcome is Outcome.MUTATED
    assert patched["metadata"]["annotations"][LEGACY] == "hard,nfsvers=4.0"
    assert "mountOptions" not in patched["spec"]  # emptied: removed
    assert {"op": "remove", "path": "/spec/mountOptions"} in decision.patch
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)


def test_empty_legacy_annotation_gets_the_pin() -> None:
    eng = engine(PIN_ALL)
    _decision, patched = decide_and_apply(eng, pv(annotations={LEGACY: ""}))
    assert patched["metadata"]["annotations"][LEGACY] == "nfsvers=4.0"
    assert "mountOptions" not in patched["spec"]
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)


@pytest.mark.parametrize("key", ["mountOptions", "mountoptions", "MountOptions", "MOUNTOPTIONS"])
def test_csi_mount_options_attribute_is_stripped_on_create(key: str) -> None:
    eng = engine(PIN_ALL)
    obj = csi_pv(attrs={key: "nfsvers=4.2,hard"}, mount_options=["timeo=600"])
    decision, patched = decide_and_apply(eng, obj)
    assert decision.outcome is Outcome.MUTATED
    attrs = patched["spec"]["csi"]["volumeAttributes"]
    assert attrs[key] == "hard"  # the key keeps its spelling
    assert patched["spec"]["mountOptions"] == ["timeo=600", "nfsvers=4.0"]
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)


def test_every_spelling_of_the_csi_attribute_is_read_and_stripped() -> None:
    eng = engine(PIN_ALL)
    obj = csi_pv(attrs={"mountOptions": "hard", "MountOptions": "vers=4.2,timeo=600"})
    decision, patched = decide_and_apply(eng, obj)
    assert decision.before is not None and decision.before.options == ("vers=4.2",)
    attrs = patched["spec"]["csi"]["volumeAttributes"]
    assert attrs["mountOptions"] == "hard" and attrs["MountOptions"] == "timeo=600"
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)
    refused = eng.decide(obj, operation="UPDATE")
    assert refused.outcome is Outcome.WARNED and refused.patch == ()


def test_csi_mount_options_attribute_emptied_is_removed() -> None:
    eng = engine(PIN_ALL)
    _decision, patched = decide_and_apply(eng, csi_pv(attrs={"mountOptions": "vers=4.1"}))
    assert "mountOptions" not in patched["spec"]["csi"]["volumeAttributes"]
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0"]
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)


def test_csi_mount_options_attribute_is_refused_on_update() -> None:
    eng = engine(PIN_ALL)
    obj = csi_pv(attrs={"mountOptions": "nfsvers=4.2"}, mount_options=["hard"])
    decision = eng.decide(obj, operation="UPDATE")
    assert decision.outcome is Outcome.WARNED and decision.allowed
    assert decision.patch == ()
    assert len(decision.warnings) == 1
    assert_warning_ok(decision.warnings[0])
    assert "pin-all" in decision.warnings[0]
    # without a version in the immutable attribute, UPDATE pins as usual
    ok = csi_pv(attrs={"mountOptions": "hard"}, mount_options=["vers=4.1"])
    decision, patched = decide_and_apply(eng, ok, operation="UPDATE")
    assert decision.outcome is Outcome.MUTATED
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched, operation="UPDATE")


def test_pv_update_rewrites_mount_options() -> None:
    eng = engine(PIN_ALL)
    decision, patched = decide_and_apply(eng, pv(mount_options=["v4.2"]), operation="UPDATE")
    assert decision.outcome is Outcome.MUTATED
    assert_pinned(patched)


@pytest.mark.parametrize("mount_options", [None, [], ["hard"], ["vers=4.2", "hard"]])
def test_storage_class_mount_options(mount_options: list[str] | None) -> None:
    eng = engine(PIN_ALL)
    decision, patched = decide_and_apply(eng, storage_class(mount_options=mount_options))
    assert decision.outcome is Outcome.MUTATED
    (op,) = decision.patch
    assert op["path"] == "/mountOptions"
    assert op["op"] == ("add" if mount_options is None else "replace")
    assert_pinned(patched)
    assert_reinvocation_is_quiet(eng, patched)
    # UPDATE of a StorageClass's mountOptions is allowed too
    decision, patched = decide_and_apply(
        eng, storage_class(mount_options=mount_options), operation="UPDATE"
    )
    assert decision.outcome is Outcome.MUTATED
    assert_pinned(patched)


def test_subdir_provisioner_storage_class_is_in_scope_without_an_export() -> None:
    sc = storage_class(
        provisioner="cluster.local/nfs-subdir-external-provisioner", server=None, share=None
    )
    by_export = engine(policy("p", rule("r", "pin", INCIDENT_MATCH)))
    decision = by_export.decide(sc)
    assert decision.outcome is Outcome.UNMATCHED  # no server known: exports cannot match
    assert decision.target is not None and decision.target.server is None
    by_name = engine(
        policy(
            "p",
            rule(
                "r",
                "pin",
                "      provisioners: [k8s-sigs.io/nfs-subdir-external-provisioner,"
                " cluster.local/nfs-subdir-external-provisioner]\n",
            ),
        )
    )
    decision, patched = decide_and_apply(by_name, sc)
    assert decision.outcome is Outcome.MUTATED
    assert_pinned(patched)


# -- out of scope ------------------------------------------------------------------------


def test_out_of_scope_objects_are_ignored() -> None:
    eng = engine(PIN_ALL)
    host_path = pv()
    del host_path["spec"]["nfs"]
    host_path["spec"]["hostPath"] = {"path": "/srv"}
    other_csi = csi_pv(driver="ebs.csi.aws.com")
    other_sc = storage_class(provisioner="kubernetes.io/aws-ebs")
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}, "spec": {}}
    for obj in (host_path, other_csi, other_sc, pod):
        decision = eng.decide(obj)
        assert decision.outcome is Outcome.IGNORED, obj
        assert decision.allowed and decision.patch == () and not decision.recorded


def test_a_driver_named_in_a_rule_brings_its_objects_into_scope() -> None:
    eng = engine(policy("p", rule("custom", "pin", "      provisioners: ['*.nfs.example.com']\n")))
    obj = csi_pv(driver="fast.nfs.example.com", mount_options=["vers=4.2"])
    decision, patched = decide_and_apply(eng, obj)
    assert decision.outcome is Outcome.MUTATED
    assert_pinned(patched)
    sc = storage_class(provisioner="fast.nfs.example.com")
    decision, patched = decide_and_apply(eng, sc)
    assert decision.outcome is Outcome.MUTATED
    assert_pinned(patched)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["spec"].__setitem__("mountOptions", "nfsvers=4.1"),
        lambda o: o["spec"].__setitem__("mountOptions", [4.1]),
        lambda o: o["spec"]["nfs"].__setitem__("server", 7),
        lambda o: o["metadata"].__setitem__("annotations", {LEGACY: ["vers=4.1"]}),
        lambda o: o["spec"].__setitem__("nfs", ["server"]),
        lambda o: o.__setitem__("spec", [1, 2]),
        lambda o: o.__setitem__("metadata", "pv"),
    ],
)
def test_objects_no_apiserver_sends_raise_invalid_object(mutate: Any) -> None:
    obj = pv()
    mutate(obj)
    with pytest.raises(InvalidObject):
        engine(PIN_ALL).decide(obj)


# -- exports -----------------------------------------------------------------------------


def _export_engine(server: str, path: str | None = None) -> Engine:
    match = f"      exports:\n      - server: '{server}'\n"
    if path is not None:
        match += f"        path: '{path}'\n"
    return engine(policy("p", rule("r", "pin", match)))


@pytest.mark.parametrize(
    ("pattern", "server", "matches"),
    [
        ("192.168.100.7", "192.168.100.7", True),
        ("192.168.100.7", "192.168.100.8", False),
        ("10.20.0.0/16", "10.20.3.4", True),
        ("10.20.0.0/16", "10.21.0.1", False),
        ("10.20.0.0/16", "nfs.corp", False),
        ("fd00::/64", "fd00::7", True),
        ("fd00::7", "[fd00::7]", True),
        ("fd00::/64", "fd01::7", False),
        ("nfs.corp.example", "NFS.Corp.Example", True),
        ("NFS.corp.example", "nfs.corp.example.", True),
        ("nfs.corp.example", "nfs2.corp.example", False),
        ("*.nfs.corp", "filer1.nfs.corp", True),
        ("*.nfs.corp", "A.B.NFS.CORP", True),
        ("*.nfs.corp", "nfs.corp", False),
        ("*.nfs.corp", "filer1.nfs.corp.evil", False),
        ("filer?.nfs.corp", "filer7.nfs.corp", True),
        ("filer[0-3].nfs.corp", "filer4.nfs.corp", False),
        # no DNS: a rule naming an IP does not match a host name, nor the reverse
        ("192.168.100.7", "node003-nfs.corp", False),
        ("nfs.corp.example", "192.168.100.7", False),
    ],
)
def test_export_servers(pattern: str, server: str, matches: bool) -> None:
    decision = _export_engine(pattern).decide(pv(server=server))
    assert (decision.outcome is Outcome.MUTATED) is matches, decision


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/data1/k8sdev/**", "/data1/k8sdev", True),
        ("/data1/k8sdev/**", "/data1/k8sdev/", True),
        ("/data1/k8sdev/**", "/data1/k8sdev/hl", True),
        ("/data1/k8sdev/**", "/data1/k8sdev/hl/", True),
        ("/data1/k8sdev/**", "/data1/k8sdev/a/b/c", True),
        ("/data1/k8sdev/**", "/data1/k8sdevX", False),
        ("/data1/k8sdev/**", "/data1", False),
        ("/data1/k8sdev/**", "//data1//k8sdev/hl", True),
        ("/data1/*/hl", "/data1/k8sdev/hl", True),
        ("/data1/*/hl", "/data1/a/b/hl", False),
        ("/data1/**/hl", "/data1/a/b/hl", True),
        ("/data1/**/hl", "/data1/hl", False),
        ("/data1/k8sdev/", "/data1/k8sdev", True),
        ("/data1/k8sdev", "/data1/k8sdev/", True),
        ("/data1/k8sdev", "/data1/k8sdev/hl", False),
        ("/exports/team-?", "/exports/team-a", True),
        ("/", "/", True),
        ("**", "/any/where", True),
    ],
)
def test_export_paths(pattern: str, path: str, matches: bool) -> None:
    decision = _export_engine(SERVER, pattern).decide(pv(path=path))
    assert (decision.outcome is Outcome.MUTATED) is matches, decision


def test_csi_export_is_share_joined_with_subdir() -> None:
    eng = _export_engine(SERVER, "/data1/k8sdev/**")
    decision = eng.decide(csi_pv(share="/data1", subdir="k8sdev/hl"))
    assert decision.target is not None
    assert decision.target.path == "/data1/k8sdev/hl"
    assert decision.outcome is Outcome.MUTATED
    decision = eng.decide(csi_pv(share="/data1/", subdir="/k8sdev/"))
    assert decision.outcome is Outcome.MUTATED
    assert eng.decide(csi_pv(share="/data2", subdir="k8sdev")).outcome is Outcome.UNMATCHED
    # keys are matched case-insensitively, as csi-driver-nfs does
    obj = csi_pv(subdir=None)
    attrs = obj["spec"]["csi"]["volumeAttributes"]
    obj["spec"]["csi"]["volumeAttributes"] = {
        "Server": attrs["server"],
        "SHARE": "/data1/k8sdev",
        "subDir": "x",
    }
    decision = eng.decide(obj)
    assert decision.target is not None and decision.target.server == SERVER
    assert decision.target.path == "/data1/k8sdev/x"
    assert decision.outcome is Outcome.MUTATED


def test_storage_class_export_from_parameters() -> None:
    eng = _export_engine(SERVER, "/data1/k8sdev/**")
    assert eng.decide(storage_class(share="/data1/k8sdev")).outcome is Outcome.MUTATED
    assert eng.decide(storage_class(share="/data2")).outcome is Outcome.UNMATCHED


def test_many_rules_for_other_exports_do_not_change_the_answer() -> None:
    rules = "".join(
        rule(f"other-{i}", "deny", f"      exports:\n      - server: 10.9.{i // 250}.{i % 250}\n")
        for i in range(500)
    )
    rules += rule("mine", "pin", INCIDENT_MATCH)
    eng = engine(policy("big", rules))
    decision = eng.decide(pv())
    assert decision.deciding is not None and decision.deciding.rule == "mine"
    assert [r.rule for r in decision.matched] == ["mine"]
    denied = eng.decide(pv(server="10.9.1.7"))
    assert denied.deciding is not None and denied.deciding.rule == "other-257"


# -- provisioners, storageClassNames, objectSelector, exclude ----------------------------


def test_provisioners() -> None:
    eng = engine(policy("p", rule("csi", "pin", "      provisioners: [nfs.csi.k8s.io]\n")))
    assert eng.decide(csi_pv()).outcome is Outcome.MUTATED
    assert eng.decide(storage_class()).outcome is Outcome.MUTATED
    assert eng.decide(pv()).outcome is Outcome.UNMATCHED  # in-tree, not provisioned
    provisioned = pv(annotations={"pv.kubernetes.io/provisioned-by": "nfs.csi.k8s.io"})
    assert eng.decide(provisioned).outcome is Outcome.MUTATED


def test_storage_class_names() -> None:
    eng = engine(policy("p", rule("ssd", "pin", "      storageClassNames: [nfs-ssd]\n")))
    assert eng.decide(pv(storage_class="nfs-ssd")).outcome is Outcome.MUTATED
    assert eng.decide(pv(storage_class="nfs-hdd")).outcome is Outcome.UNMATCHED
    assert eng.decide(pv()).outcome is Outcome.UNMATCHED
    assert eng.decide(storage_class(name="nfs-ssd")).outcome is Outcome.MUTATED
    assert eng.decide(storage_class(name="nfs-hdd")).outcome is Outcome.UNMATCHED


def test_object_selector() -> None:
    match = (
        "      objectSelector:\n"
        "        matchLabels: {team: data}\n"
        "        matchExpressions:\n"
        "        - {key: tier, operator: NotIn, values: [scratch]}\n"
        "        - {key: nfsguard.io/skip, operator: DoesNotExist}\n"
    )
    eng = engine(policy("p", rule("sel", "pin", match)))
    assert eng.decide(pv(labels={"team": "data"})).outcome is Outcome.MUTATED
    assert eng.decide(pv(labels={"team": "data", "tier": "gold"})).outcome is Outcome.MUTATED
    assert eng.decide(pv(labels={"team": "data", "tier": "scratch"})).outcome is Outcome.UNMATCHED
    skip = {"team": "data", "nfsguard.io/skip": ""}
    assert eng.decide(pv(labels=skip)).outcome is Outcome.UNMATCHED
    assert eng.decide(pv(labels={"team": "web"})).outcome is Outcome.UNMATCHED
    assert eng.decide(pv()).outcome is Outcome.UNMATCHED
    assert eng.decide(storage_class(labels={"team": "data"})).outcome is Outcome.MUTATED


def test_match_keys_are_anded_and_items_ored() -> None:
    match = (
        "      exports:\n      - server: 10.0.0.1\n      - server: 192.168.100.7\n"
        "      storageClassNames: [nfs-ssd, nfs-fast]\n"
    )
    eng = engine(policy("p", rule("both", "pin", match)))
    assert eng.decide(pv(storage_class="nfs-fast")).outcome is Outcome.MUTATED
    assert eng.decide(pv(server="10.0.0.1", storage_class="nfs-ssd")).outcome is Outcome.MUTATED
    assert eng.decide(pv(storage_class="other")).outcome is Outcome.UNMATCHED
    assert eng.decide(pv(server="10.0.0.2", storage_class="nfs-ssd")).outcome is Outcome.UNMATCHED


def test_exclude() -> None:
    extra = (
        "    exclude:\n"
        "      exports:\n      - server: 192.168.100.7\n        path: /data1/k8sdev/legacy/**\n"
    )
    eng = engine(policy("p", rule("r", "pin", INCIDENT_MATCH, extra)))
    assert eng.decide(pv(path="/data1/k8sdev/hl")).outcome is Outcome.MUTATED
    excluded = eng.decide(pv(path="/data1/k8sdev/legacy/x"))
    assert excluded.outcome is Outcome.UNMATCHED and excluded.matched == ()
    by_label = (
        "    exclude:\n      objectSelector:\n        matchLabels: {nfsguard.io/skip: 'true'}\n"
    )
    eng = engine(policy("p", rule("r", "pin", INCIDENT_MATCH, by_label)))
    assert eng.decide(pv(labels={"nfsguard.io/skip": "true"})).outcome is Outcome.UNMATCHED
    assert eng.decide(pv(labels={"nfsguard.io/skip": "no"})).outcome is Outcome.MUTATED


# -- node kernels ------------------------------------------------------------------------

EL7_BAD = "3.10.0-862.14.4.el7.x86_64"
EL7_FIXED = "3.10.0-1160.el7.x86_64"
UBUNTU = "5.15.0-91-generic"

KERNEL_MATCH = (
    INCIDENT_MATCH + "      nodeKernels:\n"
    "      - {family: el7, min: 3.10.0-862, below: 3.10.0-957}\n"
)


def _node(name: str, kernel: str, zone: str) -> Node:
    return Node(
        name=name,
        kernel=kernel,
        labels={"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone},
    )


INVENTORY = StaticInventory(
    [
        _node("node001", UBUNTU, "a"),
        _node("node002", EL7_FIXED, "b"),
        _node("node003", EL7_BAD, "c"),
    ]
)


def _affinity(key: str, values: list[str]) -> dict[str, Any]:
    return {
        "required": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}
            ]
        }
    }


def test_node_kernels_with_an_inventory() -> None:
    eng = engine(policy("p", rule("el7-bug", "pin", KERNEL_MATCH)))
    # every node in scope (no affinity): node003 runs an affected kernel
    decision = eng.decide(pv(), inventory=INVENTORY)
    assert decision.outcome is Outcome.MUTATED
    assert EL7_BAD in decision.nodes
    # scoped to nodes with fixed or other kernels: no match
    zone_ab = _affinity("topology.kubernetes.io/zone", ["a", "b"])
    decision = eng.decide(pv(node_affinity=zone_ab), inventory=INVENTORY)
    assert decision.outcome is Outcome.UNMATCHED
    zone_c = _affinity("kubernetes.io/hostname", ["node003"])
    assert eng.decide(pv(node_affinity=zone_c), inventory=INVENTORY).outcome is Outcome.MUTATED
    # a StorageClass's allowedTopologies scopes it the same way
    sc = storage_class()
    sc["allowedTopologies"] = [
        {"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a"]}]}
    ]
    assert eng.decide(sc, inventory=INVENTORY).outcome is Outcome.UNMATCHED
    sc["allowedTopologies"][0]["matchLabelExpressions"][0]["values"] = ["a", "c"]
    assert eng.decide(sc, inventory=INVENTORY).outcome is Outcome.MUTATED


def test_node_kernels_without_an_inventory() -> None:
    affected = engine(policy("p", rule("el7-bug", "pin", KERNEL_MATCH)))
    decision = affected.decide(pv())  # default: no inventory, assumeAffected
    assert decision.outcome is Outcome.MUTATED
    assert "assumeAffected" in decision.nodes
    decision = affected.decide(pv(), inventory=UnknownInventory("watch not synced"))
    assert decision.outcome is Outcome.MUTATED
    assert "watch not synced" in decision.nodes
    unaffected = engine(
        policy(
            "p",
            rule("el7-bug", "pin", KERNEL_MATCH),
            extra_spec="  unknownNodes: assumeUnaffected\n",
        )
    )
    decision = unaffected.decide(pv())
    assert decision.outcome is Outcome.UNMATCHED
    assert "assumeUnaffected" in decision.nodes
    # with an inventory, unknownNodes plays no part
    assert unaffected.decide(pv(), inventory=INVENTORY).outcome is Outcome.MUTATED


def test_unknown_nodes_in_exclude_keep_the_rule_applying_when_assume_affected() -> None:
    # docs/policy-authoring.md: assumeAffected means "the rule matches" (safe), so an
    # exclude about node kernels does not hold when the kernels are unknown ...
    exclude = "    exclude:\n      nodeKernels:\n      - {family: el8}\n"
    eng = engine(policy("p", rule("r", "pin", INCIDENT_MATCH, exclude)))
    decision = eng.decide(pv())
    assert decision.outcome is Outcome.MUTATED
    assert "assumeAffected" in decision.nodes
    # ... and with assumeUnaffected the rule does not apply
    unaffected = engine(
        policy(
            "p",
            rule("r", "pin", INCIDENT_MATCH, exclude),
            extra_spec="  unknownNodes: assumeUnaffected\n",
        )
    )
    assert unaffected.decide(pv()).outcome is Outcome.UNMATCHED
    # with an inventory the kernels decide: no el8 node, the rule applies
    assert eng.decide(pv(), inventory=INVENTORY).outcome is Outcome.MUTATED
    el8 = StaticInventory([_node("n8", "4.18.0-477.10.1.el8_8.x86_64", "a")])
    assert eng.decide(pv(), inventory=el8).outcome is Outcome.UNMATCHED


def test_nodes_note_is_empty_when_no_rule_asks() -> None:
    decision = engine(PIN_ALL).decide(pv(), inventory=INVENTORY)
    assert decision.nodes == ""


# -- onExplicit --------------------------------------------------------------------------


def test_on_explicit_deny() -> None:
    eng = engine(policy("p", rule("strict", "pin", INCIDENT_MATCH, "    onExplicit: deny\n")))
    for explicit in (["nfsvers=4.1"], ["vers=4.2", "hard"], ["vers=4", "minorversion=1"]):
        decision = eng.decide(pv(mount_options=explicit))
        assert decision.outcome is Outcome.DENIED, explicit
        assert "strict" in decision.message and "nfsvers=4.0" in decision.message
    # negotiated mounts are still rewritten
    for negotiated in (None, ["hard"], ["vers=4"], ["minorversion=1"]):
        decision, patched = decide_and_apply(eng, pv(mount_options=negotiated))
        assert decision.outcome is Outcome.MUTATED, negotiated
        assert_pinned(patched)


# -- what a decision carries -------------------------------------------------------------


def test_decision_fields() -> None:
    doc = policy("site-rules", rule("incident-node003-hang", "pin", INCIDENT_MATCH))
    eng = engine(doc)
    decision = eng.decide(pv(mount_options=["vers=4.2", "hard"]))
    ref = decision.deciding
    assert ref is not None
    assert ref.policy == "site-rules"
    assert ref.policy_version == "2026.11.27-1"
    assert ref.policy_digest.startswith("sha256:") and len(ref.policy_digest) == 7 + 64
    assert ref.rule == "incident-node003-hang"
    assert ref.action is Action.PIN
    assert ref.to_dict()["policyDigest"] == ref.policy_digest
    assert decision.outcome is Outcome.MUTATED
    assert decision.matched == (ref,)
    assert decision.before is not None and decision.after is not None
    assert decision.before.version == "4.2" and decision.before.kind == "explicit"
    assert decision.before.affected and decision.before.options == ("vers=4.2",)
    assert decision.after.version == "4.0" and not decision.after.affected
    assert decision.after.options == ("nfsvers=4.0",)
    assert decision.patch and decision.message
    assert decision.target is not None
    assert decision.target.export == f"{SERVER}:{EXPORT}"
    assert decision.target.kind == "PersistentVolume" and decision.target.name == "pv-nfs"
    # the digest is of the content: same text, same digest; a changed rule, another
    again = engine(doc).decide(pv()).deciding
    assert again is not None and again.policy_digest == ref.policy_digest
    changed = engine(doc.replace("/data1/k8sdev/**", "/data1/**")).decide(pv()).deciding
    assert changed is not None and changed.policy_digest != ref.policy_digest
    # denials and warnings carry the before state and no after change
    denied = engine(policy("p", rule("d", "deny", INCIDENT_MATCH))).decide(pv())
    assert denied.before == denied.after and denied.patch == ()


def test_negotiated_before_state() -> None:
    decision = engine(PIN_ALL).decide(pv())
    assert decision.before is not None
    assert decision.before.kind == "negotiated" and decision.before.version == "4.2"
    assert decision.before.affected


LONG = "a" * 63


@pytest.mark.parametrize("action", ["pin", "warn"])
def test_warnings_stay_short_and_printable(action: str) -> None:
    server = ".".join(["verylongnfsserverlabel" + str(i) for i in range(8)]) + ".example"
    path = "/" + "/".join(["deeply-nested-export-directory"] * 8)
    doc = policy("p" + "x" * 200, rule(LONG, action, ""), version="v" * 120 + "\u00e9\u2603")
    eng = engine(doc)
    options = ["vers=4.2", *[f"opt{i}=" + "x" * 40 for i in range(5)]]
    decision = eng.decide(pv(server=server, path=path, mount_options=options))
    assert decision.warnings
    for warning in decision.warnings:
        assert_warning_ok(warning)
    refused = engine(doc).decide(
        csi_pv(server=server, attrs={"mountOptions": "vers=4.2"}), operation="UPDATE"
    )
    for warning in refused.warnings:
        assert_warning_ok(warning)


def test_warnings_drop_control_characters_from_object_fields() -> None:
    eng = engine(policy("p", rule("w", "warn", "")))
    decision = eng.decide(pv(server="nfs\nevil", path="/x\t/y"))
    assert decision.warnings
    for warning in decision.warnings:
        assert_warning_ok(warning)


# -- many objects: every patch applies and leaves the invariant -------------------------


def _objects() -> Sequence[dict[str, Any]]:
    option_lists: list[list[str] | None] = [
        None,
        [],
        ["hard"],
        ["vers=4.1"],
        ["nfsvers=4.2,hard", "timeo=600"],
        ["v4", "minorversion=1"],
        ["vers=4.1", "nfsvers=4.0"],
        ["NFSVERS=4.0"],
        ["hard, nfsvers=4.0"],
        ["vers=4.7", "soft"],
        ["minorversion=2"],
    ]
    out: list[dict[str, Any]] = []
    for options in option_lists:
        out.append(pv(mount_options=options))
        out.append(storage_class(mount_options=options))
        out.append(pv(mount_options=options, annotations={LEGACY: "vers=4.2,hard"}))
        out.append(pv(mount_options=options, annotations={LEGACY: "rsize=1048576"}))
        out.append(csi_pv(mount_options=options))
        out.append(csi_pv(mount_options=options, attrs={"mountOptions": "vers=4.1,hard"}))
        out.append(csi_pv(mount_options=options, attrs={"MOUNTOPTIONS": "v4.2"}))
        out.append(
            csi_pv(mount_options=options, attrs={"mountOptions": "v4.1", "mountoptions": "v4.2"})
        )
    return out


@pytest.mark.parametrize("pin", ["4.0", "4.1", "3"])
def test_every_patch_applies_and_pins_exactly_once(pin: str) -> None:
    eng = engine(policy("p", rule("pin-all", "pin"), extra_spec=f'  pin: "{pin}"\n'))
    for obj in _objects():
        decision, patched = decide_and_apply(eng, obj)
        ev = effective_version(node_option_string(obj).split(","))
        if not ev.affected:
            assert decision.outcome is Outcome.COMPLIANT and decision.patch == ()
            continue
        assert decision.outcome is Outcome.MUTATED, (obj, decision)
        assert_pinned(patched, pin)
        assert decision.after is not None and decision.after.version == pin
        assert_reinvocation_is_quiet(eng, patched)
        # and the patch built for CREATE also applies to the object reviewed as UPDATE,
        # unless it touches the immutable CSI attribute
        update = eng.decide(obj, operation="UPDATE")
        if update.outcome is Outcome.MUTATED:
            assert_pinned(apply(obj, update), pin)
        else:
            assert update.outcome is Outcome.WARNED
            assert _csi_mount_options(obj) is not None
