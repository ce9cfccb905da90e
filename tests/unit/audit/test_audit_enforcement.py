"""Audit enforcement and existing objects in the audit trail: the record says what Enforce
would have done, the schema takes it (and records written before it), ``audit query``
shows it, and ``audit verify`` still accepts logs written before the fields existed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema

from tests.unit.audit.audit_fixtures import T0, StepClock, decision, request, run_cli
from webhook.api.decision import Action, Decision, Enforcement, Outcome
from webhook.api.patch import PatchOperation
from webhook.audit.query import outcome_cell
from webhook.audit.record import GENESIS, seal, to_line
from webhook.audit.writer import AuditWriter

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "webhook" / "data" / "audit-record.schema.json"
WOULD_PATCH: tuple[PatchOperation, ...] = (
    {"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]},
)


def audited() -> Decision:
    return dataclasses.replace(
        decision(rule="pin-audit"),
        outcome=Outcome.WARNED,
        patch=(),
        enforcement=Enforcement.AUDIT,
        would_be=Outcome.MUTATED,
        would_patch=WOULD_PATCH,
    )


def write(log: Path) -> list[dict[str, object]]:
    writer = AuditWriter(str(log), clock=StepClock(T0), checkpoint_interval=0)
    writer.record(request(uid="a-1", name="pv-audit"), audited())
    existing = dataclasses.replace(
        decision(rule="deny-old", outcome=Outcome.WARNED, action=Action.DENY),
        patch=(),
        existing=True,
        enforcement=Enforcement.ENFORCE,
    )
    writer.record(request(uid="a-2", name="pv-old"), existing)
    writer.record(request(uid="a-3", name="pv-new"), decision())
    writer.close()
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_records_carry_enforcement_would_be_and_existing(tmp_path: Path) -> None:
    a, e, plain = write(tmp_path / "audit.log")[:3]
    assert (a["outcome"], a["enforcement"], a["wouldBe"]) == ("warned", "Audit", "mutated")
    assert a["wouldPatch"] == [dict(op) for op in WOULD_PATCH] and a["patch"] == []
    assert a["existing"] is False
    assert (e["outcome"], e["existing"], e["wouldBe"]) == ("warned", True, None)
    assert plain["wouldBe"] is None and plain["wouldPatch"] == []
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for record in (a, e, plain):
        validator.validate(record)
    old_style = {
        k: v
        for k, v in plain.items()
        if k not in ("enforcement", "wouldBe", "wouldPatch", "existing")
    }
    validator.validate(old_style)  # records written before these fields stay valid
    assert not validator.is_valid({**a, "wouldBe": "warned"})


def test_query_shows_what_enforce_would_have_done(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log)
    result = run_cli("query", str(log))
    assert result.exit_code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [(r[1], r[3]) for r in rows] == [
        ("warned(audit:mutated)", "pv-audit"),
        ("warned(existing)", "pv-old"),
        ("mutated", "pv-new"),
    ]
    assert outcome_cell({"outcome": "denied"}) == "denied"  # an old record: outcome alone
    only = run_cli("query", str(log), "--would-be", "mutated", "-o", "json")
    assert only.exit_code == 0, only.stderr
    assert [r["request"]["name"] for r in json.loads(only.stdout)] == ["pv-audit"]
    none = run_cli("query", str(log), "--would-be", "denied", "-o", "json")
    assert json.loads(none.stdout) == []


def test_verify_accepts_a_log_written_before_the_fields_existed(tmp_path: Path) -> None:
    """A chain of records without enforcement/wouldBe/wouldPatch/existing verifies."""
    log = tmp_path / "old.log"
    req: dict[str, Any] = {"uid": "o-1", "operation": "CREATE", "kind": "PersistentVolume",
                           "resource": "persistentvolumes", "subResource": "", "namespace": "",
                           "name": "pv-old", "dryRun": False}  # fmt: skip
    body: dict[str, Any] = {
        "type": "decision",
        "time": "2026-11-20T12:00:00.000000Z",
        "request": req,
        "user": {"username": "alice", "uid": "", "groups": []},
        "policy": None, "rule": None, "action": None, "matched": [], "outcome": "denied",
        "before": None, "after": None, "patch": [], "message": "no", "warnings": [],
        "target": None, "nodes": "",
    }  # fmt: skip
    first = seal(body, seq=0, prev=GENESIS)
    second = seal({**body, "request": {**req, "uid": "o-2"}}, seq=1, prev=first["hash"])
    log.write_bytes(to_line(first) + to_line(second))
    result = run_cli("verify", "--allow-unsigned", str(log))  # unsigned: exit 4 otherwise
    assert result.exit_code == 0, result.stdout + result.stderr
    query = run_cli("query", str(log))
    outcomes = [line.split()[1] for line in query.stdout.splitlines()[1:]]
    assert query.exit_code == 0 and outcomes == ["denied", "denied"]
