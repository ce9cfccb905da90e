"""Audit enforcement: pins and denials become warnings, and the decision keeps what Enforce
would have done (docs/policy-authoring.md, "Rolling out a policy: Audit")."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from tests.support import loaded
from tests.unit.engine.test_engine import (
    INCIDENT_MATCH,
    apply,
    assert_pinned,
    assert_warning_ok,
    engine,
    policy,
    pv,
    rule,
)
from webhook.admission.handler import audit_annotations
from webhook.api.decision import Enforcement, Outcome
from webhook.config.documents import Severity
from webhook.engine.explain import explain, to_json, to_text

AUDIT = "  enforcement: Audit\n"


def audit_rule(name: str, action: str, mode: str) -> str:
    return rule(name, action, INCIDENT_MATCH, f"    enforcement: {mode}\n")


def test_enforce_is_the_default() -> None:
    decision = engine(policy("p", rule("pin", "pin", INCIDENT_MATCH))).decide(pv())
    assert decision.outcome is Outcome.MUTATED
    assert decision.enforcement is Enforcement.ENFORCE and decision.would_be is None


@pytest.mark.parametrize(("action", "would"), [("pin", Outcome.MUTATED), ("deny", Outcome.DENIED)])
def test_audit_policy_admits_unchanged_and_keeps_what_enforce_would_do(
    action: str, would: Outcome
) -> None:
    obj = pv(mount_options=["hard"])
    enforced = engine(policy("p", rule("r", action, INCIDENT_MATCH))).decide(obj)
    audited = engine(policy("p", rule("r", action, INCIDENT_MATCH), extra_spec=AUDIT)).decide(obj)
    assert enforced.outcome is would
    assert audited.allowed and audited.outcome is Outcome.WARNED and audited.recorded
    assert audited.patch == () and audited.after == audited.before
    assert audited.enforcement is Enforcement.AUDIT and audited.would_be is would
    assert audited.would_patch == enforced.patch
    assert audited.message.startswith("audit: Enforce would have")
    assert enforced.message in audited.message
    (warning,) = audited.warnings
    assert warning.startswith("set nfsvers=4.0 in mountOptions (audit: would")
    assert "PersistentVolume/pv-nfs" in warning
    assert_warning_ok(warning)
    annotations = audit_annotations(audited)
    assert annotations["enforcement"] == "Audit"
    assert annotations["would-be"] == would.value


def test_the_would_be_patch_applies_and_pins() -> None:
    obj = pv(mount_options=["hard", "vers=4.2"])
    audited = engine(policy("p", rule("r", "pin", INCIDENT_MATCH), extra_spec=AUDIT)).decide(obj)
    pinned = jsonpatch.apply_patch(obj, list(audited.would_patch))
    assert_pinned(pinned)
    assert apply(obj, audited) == obj


def test_a_rule_override_audits_in_an_enforcing_policy() -> None:
    eng = engine(policy("p", audit_rule("r", "pin", "Audit")))
    decision = eng.decide(pv())
    assert decision.outcome is Outcome.WARNED and decision.would_be is Outcome.MUTATED


def test_a_rule_override_enforces_in_an_auditing_policy() -> None:
    eng = engine(policy("p", audit_rule("r", "deny", "Enforce"), extra_spec=AUDIT))
    decision = eng.decide(pv())
    assert decision.outcome is Outcome.DENIED and decision.enforcement is Enforcement.ENFORCE


def test_precedence_is_unchanged_by_enforcement() -> None:
    """An audited deny still outranks an enforced pin: enforcement only changes what the
    winner does."""
    rules = audit_rule("deny-audit", "deny", "Audit") + rule("pin", "pin", INCIDENT_MATCH)
    decision = engine(policy("p", rules)).decide(pv())
    assert decision.deciding is not None and decision.deciding.rule == "deny-audit"
    assert decision.outcome is Outcome.WARNED and decision.would_be is Outcome.DENIED
    assert [r.rule for r in decision.matched] == ["deny-audit", "pin"]


@pytest.mark.parametrize("action", ["warn", "audit", "exempt"])
def test_audit_does_not_change_what_never_changes_an_object(action: str) -> None:
    enforced = engine(policy("p", rule("r", action, INCIDENT_MATCH))).decide(pv())
    audited = engine(policy("p", rule("r", action, INCIDENT_MATCH), extra_spec=AUDIT)).decide(pv())
    assert audited.outcome is enforced.outcome and audited.warnings == enforced.warnings
    assert audited.would_be is None


def test_explain_shows_audit_and_the_would_be_patch() -> None:
    obj = pv()
    eng = engine(policy("p", rule("r", "pin", INCIDENT_MATCH), extra_spec=AUDIT))
    e = explain(eng.evaluate(obj), obj)
    data: dict[str, Any] = to_json(e)
    assert data["outcome"] == "warned" and data["enforcement"] == "Audit"
    assert data["wouldBe"] == "mutated" and data["patch"] == []
    assert data["wouldPatch"] == [
        {"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]}
    ]
    text = to_text(e)
    assert "  enforcement: Audit (Enforce would: mutated)" in text
    assert "  would patch (not sent: Audit):" in text


def test_audit_and_existing_together_never_deny() -> None:
    eng = engine(policy("p", rule("r", "deny", INCIDENT_MATCH), extra_spec=AUDIT))
    old = pv()
    new = pv(labels={"a": "b"})
    decision = eng.decide(new, operation="UPDATE", old_object=old)
    assert decision.outcome is Outcome.WARNED and decision.existing


# -- the policy language ---------------------------------------------------------------------


def test_enforcement_is_loaded_for_the_policy_and_the_rule() -> None:
    doc = policy("p", audit_rule("r", "pin", "Enforce") + rule("s", "deny"), extra_spec=AUDIT)
    (p,) = loaded([("p.yaml", doc)]).checked().policies
    assert p.enforcement is Enforcement.AUDIT
    assert [r.enforcement for r in p.rules] == [Enforcement.ENFORCE, None]
    assert [p.enforcement_of(r) for r in p.rules] == [Enforcement.ENFORCE, Enforcement.AUDIT]


def test_a_bad_enforcement_is_an_error_with_its_position() -> None:
    result = loaded([("p.yaml", policy("p", rule("r", "pin"), extra_spec="  enforcement: Dry\n"))])
    assert [str(e) for e in result.errors] == [
        "p.yaml:7:16: spec.enforcement: 'Dry' is not one of: Enforce, Audit"
    ]


def test_enforcement_on_a_rule_that_never_changes_an_object_is_a_warning() -> None:
    result = loaded([("p.yaml", policy("p", audit_rule("r", "warn", "Audit")))])
    assert not result.errors
    (problem,) = [p for p in result.problems if "enforcement" in p.message]
    assert problem.severity is Severity.WARNING
    assert problem.message.startswith('rule "r": enforcement changes only what pin and deny do')
