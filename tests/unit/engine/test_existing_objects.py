"""Existing objects: an UPDATE that keeps the NFS options of its oldObject is never denied,
and an object being deleted is never touched (docs/policy-authoring.md, "Existing objects").

The PV controller's bind (``claimRef``), label edits and the finalizer removal that ends a
``kubectl delete pv`` are UPDATEs of a PV that may predate the rule that now denies it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.engine.test_engine import (
    INCIDENT_MATCH,
    LEGACY,
    apply,
    assert_pinned,
    assert_warning_ok,
    csi_pv,
    engine,
    policy,
    pv,
    rule,
    storage_class,
)
from webhook.admission.handler import decide
from webhook.admission.offline import offline_request
from webhook.api.decision import Outcome
from webhook.engine.explain import explain, to_json, to_text
from webhook.nfs.inventory import UnknownInventory

DENY = engine(policy("site", rule("no-42", "deny", INCIDENT_MATCH)))
PIN = engine(policy("site", rule("pin-42", "pin", INCIDENT_MATCH)))
NO_NODES = UnknownInventory("test")


def bound(obj: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": "a", "name": "c"}
    new["status"] = {"phase": "Bound"}
    return new


def relabelled(obj: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["metadata"].setdefault("labels", {})["team"] = "data"
    new["metadata"].setdefault("annotations", {})["note"] = "hello"
    return new


def finalizers_removed(obj: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["metadata"]["finalizers"] = []
    return new


@pytest.mark.parametrize("change", [bound, relabelled, finalizers_removed])
def test_update_of_an_existing_violation_is_allowed_with_a_warning(change: Any) -> None:
    old = pv(mount_options=["hard"])
    old["metadata"]["finalizers"] = ["kubernetes.io/pv-protection"]
    new = change(old)
    assert DENY.decide(new, operation="UPDATE").outcome is Outcome.DENIED  # without oldObject
    decision = DENY.decide(new, operation="UPDATE", old_object=old)
    assert decision.allowed and decision.outcome is Outcome.WARNED
    assert decision.recorded and decision.existing
    assert decision.patch == ()
    assert decision.deciding is not None and decision.deciding.rule == "no-42"
    assert "existing object: options unchanged" in decision.notes
    (warning,) = decision.warnings
    assert warning.startswith("set nfsvers=4.0 in mountOptions (allowed: options unchanged)")
    assert "PersistentVolume/pv-nfs" in warning and "options unchanged" in warning
    assert_warning_ok(warning)


def test_update_that_asks_for_4_2_is_still_denied() -> None:
    old = pv(mount_options=["hard"])
    new = pv(mount_options=["hard", "nfsvers=4.2"])
    decision = DENY.decide(new, operation="UPDATE", old_object=old)
    assert decision.outcome is Outcome.DENIED and not decision.existing


def test_update_that_reorders_or_edits_options_is_judged_as_new() -> None:
    old = pv(mount_options=["hard", "timeo=600"])
    new = pv(mount_options=["timeo=600", "hard"])
    assert DENY.decide(new, operation="UPDATE", old_object=old).outcome is Outcome.DENIED


def test_adding_the_legacy_annotation_is_a_change() -> None:
    old = pv(mount_options=["hard"])
    new = pv(mount_options=["hard"], annotations={LEGACY: "hard"})
    assert DENY.decide(new, operation="UPDATE", old_object=old).outcome is Outcome.DENIED


def test_create_never_counts_as_existing() -> None:
    obj = pv(mount_options=["hard"])
    assert DENY.decide(obj, operation="CREATE", old_object=obj).outcome is Outcome.DENIED


def test_an_unreadable_old_object_counts_as_a_change() -> None:
    old = pv(mount_options=["hard"])
    old["spec"]["mountOptions"] = "hard"  # not a list: no apiserver stores it
    new = bound(pv(mount_options=["hard"]))
    assert DENY.decide(new, operation="UPDATE", old_object=old).outcome is Outcome.DENIED


def test_a_pin_is_still_written_where_the_field_is_mutable() -> None:
    old = pv(mount_options=["hard"])
    new = bound(old)
    decision = PIN.decide(new, operation="UPDATE", old_object=old)
    assert decision.outcome is Outcome.MUTATED and decision.existing
    assert_pinned(apply(new, decision))


def test_a_pin_on_a_legacy_annotation_is_still_written() -> None:
    old = pv(annotations={LEGACY: "hard,vers=4.2"})
    new = bound(old)
    decision = PIN.decide(new, operation="UPDATE", old_object=old)
    assert decision.outcome is Outcome.MUTATED
    assert apply(new, decision)["metadata"]["annotations"][LEGACY] == "hard,nfsvers=4.0"


def test_a_storage_class_pin_is_still_written() -> None:
    old = storage_class(mount_options=["hard"])
    new = relabelled(old)
    decision = PIN.decide(new, operation="UPDATE", old_object=old)
    assert decision.outcome is Outcome.MUTATED
    assert apply(new, decision)["mountOptions"] == ["hard", "nfsvers=4.0"]


def test_an_immutable_place_is_allowed_with_a_warning() -> None:
    old = csi_pv(attrs={"mountOptions": "vers=4.2"})
    new = bound(old)
    decision = PIN.decide(new, operation="UPDATE", old_object=old)
    assert decision.allowed and decision.outcome is Outcome.WARNED and decision.patch == ()
    (warning,) = decision.warnings
    assert warning.startswith("recreate it with nfsvers=4.0")
    assert_warning_ok(warning)


def test_on_explicit_deny_on_an_existing_object_is_a_warning() -> None:
    eng = engine(policy("site", rule("strict", "pin", INCIDENT_MATCH, "    onExplicit: deny\n")))
    old = pv(mount_options=["nfsvers=4.2"])
    assert eng.decide(bound(old), operation="UPDATE").outcome is Outcome.DENIED
    decision = eng.decide(bound(old), operation="UPDATE", old_object=old)
    assert decision.outcome is Outcome.WARNED and decision.existing


def test_the_handler_passes_old_object() -> None:
    old = pv(mount_options=["hard"])
    request = offline_request(bound(old), "UPDATE", "u-1", old)
    decision = decide(DENY, request, NO_NODES)
    assert decision.outcome is Outcome.WARNED and decision.existing


def test_explain_says_existing_object_options_unchanged() -> None:
    old = pv(mount_options=["hard"])
    new = bound(old)
    trace = DENY.evaluate(new, operation="UPDATE", old_object=old)
    e = explain(trace, new, operation="UPDATE")
    data = to_json(e)
    assert data["existing"] is True
    assert data["reason"].startswith("existing object: options unchanged")
    assert "existing object: options unchanged" in data["notes"]
    assert "  existing:    yes: the NFS options are those of the old object" in to_text(e)


# -- objects being deleted -------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_an_object_being_deleted_is_never_touched(operation: Any) -> None:
    obj = pv(mount_options=["nfsvers=4.2"])
    obj["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    obj["metadata"]["finalizers"] = []
    for eng in (DENY, PIN):
        trace = eng.evaluate(obj, operation=operation, old_object=obj)
        d = trace.decision
        assert d.allowed and d.patch == () and d.warnings == ()
        assert d.outcome is Outcome.IGNORED and not d.recorded
        assert "being deleted" in trace.reason


def test_an_object_being_deleted_is_not_even_read() -> None:
    obj = pv()
    obj["spec"]["mountOptions"] = "not-a-list"
    obj["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    assert DENY.decide(obj, operation="UPDATE").outcome is Outcome.IGNORED
