"""Engine.evaluate (webhook/engine/engine.py): the whole trace of one review, the one
that decide, policy explain and later scan read, over real policy text."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.unit.engine.test_engine import INCIDENT_MATCH, engine, policy, pv, rule
from webhook.api.decision import Action, Outcome
from webhook.engine.engine import IGNORED, Engine
from webhook.engine.explain import explain, to_json
from webhook.nfs.inventory import UnknownInventory
from webhook.nfs.options import VersionKind

SUBNET = "      exports:\n      - server: 192.168.100.0/24\n"


def site() -> Engine:
    return engine(
        policy(
            "site",
            rule("warn-subnet", "warn", SUBNET)
            + rule("incident", "pin", INCIDENT_MATCH)
            + rule("audit-subnet", "audit", SUBNET),
            extra_spec='  pin: "4.0"\n',
        )
    )


def test_a_pin_is_traced_step_by_step_and_decide_reads_the_same_trace() -> None:
    eng, obj = site(), pv(mount_options=["hard", "nfsvers=4.2"])
    trace = eng.evaluate(obj)
    assert trace.target is not None and trace.target.server == "192.168.100.7"
    assert trace.effective is not None and trace.effective.kind is VersionKind.EXPLICIT
    assert trace.effective == trace.decision.before
    assert [c.rule.name for c in trace.matched] == ["warn-subnet", "incident", "audit-subnet"]
    assert trace.deciding is not None and trace.deciding.rule.action is Action.PIN
    assert trace.decision.deciding == trace.deciding.ref
    assert trace.decision.matched == tuple(c.ref for c in trace.matched)
    assert trace.outcome is Outcome.MUTATED and trace.patch == trace.decision.patch != ()
    assert trace.reason == (
        "pin outranks warn, audit (precedence exempt > deny > pin > warn > audit)"
    )
    assert eng.decide(obj) == trace.decision


def test_out_of_scope_is_the_one_ignored_trace() -> None:
    eng = site()
    trace = eng.evaluate({"kind": "ConfigMap", "metadata": {"name": "x"}})
    assert trace is IGNORED
    assert trace.target is None and trace.matched == () and trace.deciding is None
    assert trace.effective is None and trace.outcome is Outcome.IGNORED
    assert trace.reason == "not an NFS object in scope"


@pytest.mark.parametrize(
    ("obj", "outcome", "reason"),
    [
        (
            pv(mount_options=["nfsvers=4.0"]),
            Outcome.COMPLIANT,
            "the effective version is safe: the object is compliant and no rule acts",
        ),
        (
            pv(server="10.9.9.9"),
            Outcome.UNMATCHED,
            "no rule matches: nfsguard leaves the object alone",
        ),
    ],
)
def test_no_deciding_rule_says_why(obj: dict[str, Any], outcome: Outcome, reason: str) -> None:
    trace = site().evaluate(obj)
    assert trace.target is not None and trace.deciding is None
    assert trace.outcome is outcome and trace.reason == reason


def test_the_node_kernel_note_is_part_of_the_trace() -> None:
    kernels = "      nodeKernels: [{family: el7}]\n"
    eng = engine(policy("kernels", rule("el7", "warn", kernels)))
    trace = eng.evaluate(pv(), inventory=UnknownInventory("not synced"))
    assert trace.nodes == "unknown (not synced): assumeAffected" == trace.decision.nodes


def test_the_trace_is_frozen_and_explain_reads_only_it() -> None:
    eng, obj = site(), pv()
    trace = eng.evaluate(obj, operation="UPDATE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        trace.deciding = None  # type: ignore[misc]
    explained = to_json(explain(trace, obj, source="pv.yaml", operation="UPDATE"))
    assert explained["outcome"] == trace.outcome.value
    assert explained["deciding"]["rule"] == "incident"
    assert explained["reason"] == trace.reason
    assert [r["rule"] for r in explained["matched"]] == [c.rule.name for c in trace.matched]
