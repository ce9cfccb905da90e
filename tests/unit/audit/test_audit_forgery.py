"""Forging a signed log without the key: every way the issue names, through the CLI.

A writer with ``checkpoint_every=5`` signs after every decision at seq 4, 9, 14, ...
An attacker who can write the file but has no key drops the checkpoints (or turns
them into ``recovery`` records), renumbers ``seq``, edits a decision and recomputes
the chain. ``audit verify --public-key --checkpoint-every 5`` must say BROKEN (exit 1)
at the first place a checkpoint was due; a log with no checkpoint at all is never
proven (exit 4, even with --allow-unsigned); an edit inside the last, not yet signed
window is caught only with an external anchor (``--anchors`` on the collected stdout
copy). docs/audit.md, "What is and is not detectable", states the same table.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.unit.audit.audit_fixtures import (
    T0,
    StepClock,
    decision,
    keypair,
    lines_of,
    request,
    run_cli,
)
from webhook.audit.record import GENESIS, record_hash, to_line
from webhook.audit.signing import load_signer
from webhook.audit.writer import AuditWriter

EVERY = 5


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(log, audit.pub, stdout copy): 19 decisions with checkpoints at seq 5, 10, 15, 20
    (a decision at seq 4, 9, 14, 19 is followed by one), the stdout copy as a log
    collector stores it (CRI prefix), no shutdown checkpoint:
    seq 0-4 [5] 6-9 [10] 11-14 [15] 16-19 [20] 21 22 (2 decisions not yet signed)."""
    private, public, _keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    copy_r, copy_w = os.pipe()
    writer = AuditWriter(
        str(log),
        signer=load_signer(str(private)),
        checkpoint_every=EVERY,
        checkpoint_interval=0,
        clock=StepClock(T0),
        stdout=True,
        stdout_fd=copy_w,
    )
    for i in range(19):
        writer.record(request(uid=f"u{i}", name=f"pv-{i}"), decision())
    os.close(copy_w)
    with os.fdopen(copy_r, "rb") as pipe:
        shipped = pipe.read()
    copy = tmp_path / "collected.log"
    copy.write_bytes(
        b"".join(b"2026-11-20T12:00:00.1Z stdout F " + line for line in shipped.splitlines(True))
        + b"I1120 12:00:01 gunicorn: a line that is not a record\n"
    )
    types = [json.loads(line)["type"] for line in lines_of(log)]
    assert [i for i, t in enumerate(types) if t == "checkpoint"] == [5, 10, 15, 20]
    assert len(types) == 23
    return log, public, copy


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines_of(log)]


def _rechain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Renumber seq from 0 and recompute prev/hash: what anyone without the key can do."""
    prev = GENESIS
    out = []
    for seq, record in enumerate(records):
        record = {**record, "seq": seq, "prev": prev}
        record["hash"] = record_hash(record)
        prev = record["hash"]
        out.append(record)
    return out


def _write(log: Path, records: list[dict[str, Any]], raw: dict[int, bytes] | None = None) -> None:
    """``records`` as lines; ``raw[i]`` is written (a partial line) before record i."""
    parts = []
    for i, record in enumerate(records):
        parts.append((raw or {}).get(i, b""))
        parts.append(to_line(record))
    log.write_bytes(b"".join(parts))


def _verify(log: Path, public: Path, *extra: str) -> tuple[int, str]:
    result = run_cli(
        "verify", str(log), "--public-key", str(public), "--checkpoint-every", str(EVERY), *extra
    )
    return result.exit_code, result.stdout.strip()


def _edit_decision(records: list[dict[str, Any]], name: str) -> None:
    for record in records:
        if record["type"] == "decision" and record["request"]["name"] == name:
            record["outcome"] = "exempt"
            return
    raise AssertionError(name)


def test_the_intact_log_is_proven_within_the_cadence(signed: tuple[Path, Path, Path]) -> None:
    log, public, copy = signed
    code, line = _verify(log, public, "--require-checkpoint-within", str(EVERY))
    assert (code, line.split(";")[0]) == (
        0,
        "OK: 23 records (seq 0..22: 19 decisions, 4 checkpoints) in 1 file(s), chain intact",
    )
    assert _verify(log, public, "--anchors", str(copy), "--require-checkpoint-within", "5")[0] == 0


def test_dropping_every_checkpoint_and_renumbering_breaks_where_one_was_due(
    signed: tuple[Path, Path, Path],
) -> None:
    log, public, _copy = signed
    records = [r for r in _records(log) if r["type"] != "checkpoint"]
    _edit_decision(records, "pv-1")
    _write(log, _rechain(records))
    code, line = _verify(log, public, "--allow-unsigned")
    assert code == 1
    assert line == (
        f"BROKEN: {log}:6: seq 5: a decision record stands where a checkpoint was due "
        "(after the decision at seq 4: the writer signs every 5 records, --checkpoint-every): "
        "checkpoints were removed or replaced and the chain recomputed without the key; "
        "no record is proven"
    )


def test_dropping_the_checkpoints_after_an_edit_breaks_at_the_next_due_one(
    signed: tuple[Path, Path, Path],
) -> None:
    log, public, _copy = signed
    records = _records(log)
    kept = records[:11] + [r for r in records[11:] if r["type"] != "checkpoint"]
    _edit_decision(kept, "pv-10")  # seq 12, after the checkpoint at seq 10
    _write(log, _rechain(kept))  # the prefix is unchanged, so it rechains to itself
    code, line = _verify(log, public)
    assert code == 1
    assert line.startswith(f"BROKEN: {log}:16: seq 15: a decision record stands where a checkpoint")
    assert line.endswith("nothing after the last valid checkpoint (seq 10) is proven")


def test_the_cadence_is_what_the_signed_checkpoints_declare(
    signed: tuple[Path, Path, Path],
) -> None:
    """Without --checkpoint-every: the first checkpoint (signed) says 5, so dropping the
    later ones breaks at seq 10; dropping them all leaves a log nothing signed."""
    log, public, _copy = signed
    records = _records(log)
    assert {r.get("checkpointEvery") for r in records if r["type"] == "checkpoint"} == {5}
    kept = records[:6] + [r for r in records[6:] if r["type"] != "checkpoint"]
    _edit_decision(kept, "pv-7")
    _write(log, _rechain(kept))
    result = run_cli("verify", str(log), "--public-key", str(public))
    assert result.exit_code == 1
    assert result.stdout.startswith(
        f"BROKEN: {log}:11: seq 10: a decision record stands where a checkpoint was due "
        "(after the decision at seq 9: the writer signs every 5 records, as its last valid "
        "checkpoint declares)"
    )
    _write(log, _rechain([r for r in kept if r["type"] != "checkpoint"]))
    result = run_cli("verify", str(log), "--public-key", str(public), "--allow-unsigned")
    assert result.exit_code == 4
    assert result.stdout.startswith("UNVERIFIED: no checkpoint at all: no record is signed")


def test_turning_each_checkpoint_into_a_recovery_record(signed: tuple[Path, Path, Path]) -> None:
    log, public, _copy = signed
    records = _records(log)
    forged = []
    for record in records:
        if record["type"] == "checkpoint":
            torn = b'{"schema": "nfsguard.io/audit/v1", "type": "checkpoint"'
            record = {
                "schema": record["schema"],
                "type": "recovery",
                "seq": 0,
                "prev": "",
                "time": record["time"],
                "torn": {
                    "offset": 0,
                    "bytes": len(torn),
                    "sha256": hashlib.sha256(torn).hexdigest(),
                },
            }
        forged.append(record)
    _edit_decision(forged, "pv-2")
    rechained = _rechain(forged)
    # plain recovery records where checkpoints stood
    _write(log, rechained)
    code, line = _verify(log, public, "--allow-unsigned")
    assert code == 1
    assert line.startswith(f"BROKEN: {log}:6: seq 5: a recovery record stands where a checkpoint")
    # ... each after a partial line it acknowledges, as if a crash had torn the checkpoint
    torn_line = b'{"schema": "nfsguard.io/audit/v1", "type": "checkpoint"\n'
    _write(log, rechained, raw={5: torn_line, 10: torn_line, 15: torn_line, 20: torn_line})
    code, line = _verify(log, public, "--allow-unsigned")
    assert code == 1
    assert line.startswith(
        f"BROKEN: {log}:8: seq 6: a decision record follows the recovery record at {log}:7, "
        "which stands where a checkpoint was due, without the checkpoint the recovering "
        "writer signs (after the decision at seq 4"
    )


def test_a_log_with_no_checkpoint_at_all_is_never_proven(tmp_path: Path) -> None:
    _private, public, _keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0, clock=StepClock(T0))  # no key
    for i in range(3):
        writer.record(request(uid=f"u{i}", name=f"pv-{i}"), decision())
    for extra in ((), ("--allow-unsigned",), ("--require-checkpoint-within", "1000")):
        code, line = _verify(log, public, *extra)
        assert code == 4, extra
        assert line.startswith("UNVERIFIED: no checkpoint at all: no record is signed")


def test_an_edit_in_the_unsigned_window_needs_the_external_anchor(
    signed: tuple[Path, Path, Path],
) -> None:
    log, public, copy = signed
    records = _records(log)
    _edit_decision(records, "pv-17")  # seq 21, after the last checkpoint (seq 20)
    _write(log, _rechain(records))
    code, line = _verify(log, public, "--require-checkpoint-within", "5")
    assert code == 0  # the key cannot see it: stated in docs/audit.md
    code, line = _verify(log, public, "--anchors", str(copy))
    assert code == 1
    assert line.startswith(f"BROKEN: {log}:22: seq 21: hash ")
    assert "differs from the anchor" in line
    # cutting the tail is caught by the copy too
    _write(log, _records(log)[:12])
    code, line = _verify(log, public, "--anchors", str(copy))
    assert (code, line) == (
        1,
        f"BROKEN: {log}:12: the chain ends at seq 11 but an anchor names seq 12: "
        "records were removed from the end",
    )


def test_anchors_files_that_cannot_be_trusted_are_refused(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    log, public, copy = signed
    lines = copy.read_bytes().splitlines(True)
    mixed = tmp_path / "two-pods.log"
    other = json.loads(lines[3].split(b" F ", 1)[1])
    other["outcome"] = "exempt"
    other["hash"] = record_hash(other)
    mixed.write_bytes(b"".join(lines) + to_line(other))
    result = run_cli("verify", str(log), "--public-key", str(public), "--anchors", str(mixed))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"--anchors {mixed}:25: seq 3: a different record than at {mixed}:4 "
        "(two chains in one anchors file? give one server's log)\n"
    )
    empty = tmp_path / "empty.log"
    empty.write_text("no records here\n")
    result = run_cli("verify", str(log), "--anchors", str(empty))
    assert (result.exit_code, result.stderr) == (
        2,
        f"--anchors {empty}: no audit record in this file\n",
    )


def test_a_crash_that_tears_the_due_checkpoint_still_verifies(tmp_path: Path) -> None:
    """The legitimate case the recovery rule must keep: the write of decision 4 and its
    checkpoint is cut inside the checkpoint; the next writer recovers (seq 5) and signs
    the recovered head first (seq 6)."""
    private, public, _keys = keypair(tmp_path)
    log = tmp_path / "audit.log"

    def writer() -> AuditWriter:
        return AuditWriter(
            str(log),
            signer=load_signer(str(private)),
            checkpoint_every=EVERY,
            checkpoint_interval=0,
            clock=StepClock(T0),
        )

    first = writer()
    for i in range(5):
        first.record(request(uid=f"u{i}", name=f"pv-{i}"), decision())
    data = log.read_bytes()
    assert json.loads(data.splitlines()[-1])["type"] == "checkpoint"
    log.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 40])  # torn checkpoint
    first._file.close()  # as a killed worker: its slot is free again, no shutdown checkpoint
    second = writer()
    second.record(request(uid="u5", name="pv-5"), decision())
    kinds = []
    for raw in lines_of(log):
        try:
            kinds.append(json.loads(raw)["type"])
        except json.JSONDecodeError:
            kinds.append("torn")
    assert kinds == ["decision"] * 5 + ["torn", "recovery", "checkpoint", "decision"]
    code, line = _verify(log, public)
    assert code == 4  # the last decision is not signed yet
    assert line.startswith("UNVERIFIED: 1 record(s) after the last checkpoint (seq 6)")
    assert _verify(log, public, "--require-checkpoint-within", "5")[0] == 0


def test_a_random_binary_file_is_broken_not_torn(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8 + b"\x00\xff tail without newline")
    result = run_cli("verify", str(junk))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"BROKEN: {junk}:1: not an audit record: ")


def test_query_since_far_in_the_past_is_one_line(signed: tuple[Path, Path, Path]) -> None:
    log, _public, _copy = signed
    for since in ("99999999d", "999999999999999999999w"):
        result = run_cli("query", str(log), "--since", since)
        assert (result.exit_code, result.stdout) == (2, "")
        assert result.stderr == f"--since: {since!r} reaches back before the year 1\n"
