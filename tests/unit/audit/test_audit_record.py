"""The record: every field of a decision, the schema file, the hash."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.audit.audit_fixtures import T0, StepClock, decision, keypair, request
from webhook.admission.handler import record as handler_record
from webhook.api.decision import Decision, Outcome
from webhook.api.review import AdmissionRequest, UserInfo
from webhook.audit.record import (
    GENESIS,
    SCHEMA,
    canonical,
    parse_rfc3339,
    record_hash,
    rfc3339,
)
from webhook.audit.signing import load_signer
from webhook.audit.writer import AuditWriter

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "webhook" / "data" / "audit-record.schema.json"


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_decision_record_carries_every_field(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), clock=StepClock(T0), checkpoint_interval=0)
    writer.record(request(uid="r-1", groups=("ops", "system:authenticated")), decision())
    writer.close()
    (record,) = _records(log)
    digest = record.pop("hash")
    chain = record["chain"]
    assert isinstance(chain, str) and re.fullmatch(r"[0-9a-f]{16}", chain)
    assert record == {
        "schema": SCHEMA,
        "type": "decision",
        "chain": chain,
        "seq": 0,
        "prev": GENESIS,
        "time": "2026-11-20T12:00:00.000000Z",
        "request": {
            "uid": "r-1",
            "operation": "CREATE",
            "kind": "PersistentVolume",
            "resource": "persistentvolumes",
            "subResource": "",
            "namespace": "",
            "name": "pv-nfs",
            "dryRun": False,
        },
        "user": {"username": "alice", "uid": "u-alice", "groups": ["ops", "system:authenticated"]},
        "policy": {"name": "nfs-safety", "version": "3", "digest": "sha256:" + "ab" * 32},
        "rule": "pin-nfs42",
        "action": "pin",
        "matched": [
            {
                "policy": "nfs-safety",
                "policyVersion": "3",
                "policyDigest": "sha256:" + "ab" * 32,
                "rule": "pin-nfs42",
                "action": "pin",
            },
            {
                "policy": "nfs-safety",
                "policyVersion": "3",
                "policyDigest": "sha256:" + "ab" * 32,
                "rule": "warn-all",
                "action": "warn",
            },
        ],
        "outcome": "mutated",
        "before": {"version": "4.2", "kind": "negotiated", "affected": True, "options": []},
        "after": {
            "version": "4.1",
            "kind": "explicit",
            "affected": True,  # NFSv4.1 bugs reach an explicit 4.1 (EffectiveVersion.affected)
            "options": ["nfsvers=4.1"],
        },
        "patch": [{"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.1"]}],
        "message": "pinned to NFS 4.1 by pin-nfs42",
        "warnings": ["pinned"],
        "target": {
            "kind": "PersistentVolume",
            "name": "pv-nfs",
            "driver": "nfs.csi.k8s.io",
            "export": "srv:/export",
            "server": "srv",
            "path": "/export",
            "storageClass": "nfs-csi",
        },
        "nodes": "inventory: 3 nodes",
        "notes": ["pin written as a complete option set for the driver"],
        "enforcement": None,
        "wouldBe": None,
        "wouldPatch": [],
        "existing": False,
    }
    assert digest == record_hash(record)


def test_generate_name_and_dry_run_are_recorded(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0)
    req = AdmissionRequest(
        uid="g-1",
        kind="PersistentVolume",
        resource="persistentvolumes",
        operation="CREATE",
        name="",
        object={"metadata": {"generateName": "pv-auto-"}},
        user=UserInfo(username="bob"),
        dry_run=True,
    )
    writer.record(req, decision())
    writer.close()
    (record,) = _records(log)
    assert record["request"] == {
        "uid": "g-1",
        "operation": "CREATE",
        "kind": "PersistentVolume",
        "resource": "persistentvolumes",
        "subResource": "",
        "namespace": "",
        "name": "pv-auto-*",
        "dryRun": True,
    }


def test_only_recorded_outcomes_are_written(tmp_path: Path) -> None:
    # The handler chooses what is recorded (compliant and unmatched only with
    # serve --audit-compliant); the writer never records an object out of scope.
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0)
    for coverage in (False, True):
        for outcome in Outcome:
            req = request(uid=f"{outcome.value}-{coverage}")
            handler_record(writer, req, Decision(outcome=outcome), coverage=coverage)
        writer.record(request(uid="direct"), Decision(outcome=Outcome.IGNORED))
    writer.close()
    written = [r["outcome"] for r in _records(log)]
    recorded = ["mutated", "denied", "warned", "audited", "exempt"]
    assert written == [*recorded, *recorded, "compliant", "unmatched"]
    assert [r["seq"] for r in _records(log)] == list(range(12))
    # a decision without rule, target or version states still makes a valid record
    bare = _records(log)[1]
    assert (bare["policy"], bare["rule"], bare["action"], bare["target"]) == (None,) * 4


def test_hash_is_over_canonical_json_not_line_layout() -> None:
    a = {"seq": 1, "type": "decision", "z": {"b": 1, "a": "é"}}
    b = {"z": {"a": "é", "b": 1}, "type": "decision", "seq": 1}
    assert (
        canonical(a) == canonical(b) == '{"seq":1,"type":"decision","z":{"a":"é","b":1}}'.encode()
    )
    assert record_hash(a) == record_hash({**b, "hash": "ignored"})
    assert record_hash(a) != record_hash({**a, "seq": 2})


def test_every_record_type_matches_the_json_schema(tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    private, _public, _keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    writer = AuditWriter(
        str(log), signer=load_signer(str(private)), checkpoint_every=2, checkpoint_interval=0
    )
    writer.record(request(), decision())
    writer.record(request(uid="2"), Decision(outcome=Outcome.DENIED, message="no"))
    writer.close()
    with log.open("ab") as handle:
        handle.write(b'{"schema": "nfsguard.io/audit/v1", "ty')  # a crash mid-write
    writer = AuditWriter(str(log), checkpoint_interval=0)
    writer.close()
    lines = log.read_bytes().splitlines()
    records = [json.loads(line) for line in lines if not line.endswith(b'"ty')]
    assert [r["type"] for r in records] == ["decision", "decision", "checkpoint", "recovery"]
    for record in records:
        validator.validate(record)
    broken = dict(records[0], outcome="ignored")  # out of scope: never a record
    assert not validator.is_valid(broken)
    assert validator.is_valid(dict(records[0], outcome="compliant"))  # --audit-compliant


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min]),
    )
)
def test_record_times_are_utc_with_microseconds_and_z(moment: datetime) -> None:
    text = rfc3339(moment)
    assert text == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert parse_rfc3339(text) == moment


def test_a_naive_time_is_never_a_record_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rfc3339(datetime(2026, 12, 7, 12, 0))
