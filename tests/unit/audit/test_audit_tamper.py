"""Editing, deleting, reordering, truncating a real log: what verify says, exactly."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.unit.audit.audit_fixtures import (
    T0,
    StepClock,
    decision,
    keypair,
    lines_of,
    log_files,
    request,
    verify_files,
)
from webhook.audit.record import record_hash, to_line
from webhook.audit.signing import generate, key_id, load_public_key, load_signer
from webhook.audit.verify import Verifier, Where
from webhook.audit.writer import AuditWriter


@pytest.fixture
def signed_log(tmp_path: Path) -> tuple[Path, dict[str, Ed25519PublicKey]]:
    """10 decisions and a checkpoint at every multiple of 5: 12 lines, no tail checkpoint.

    seq: 0 1 2 3 4 [5=ck] 6 7 8 9 [10=ck] 11
    """
    private, _public, keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    writer = AuditWriter(
        str(log),
        signer=load_signer(str(private)),
        checkpoint_every=5,
        checkpoint_interval=0,
        clock=StepClock(T0),
    )
    for i in range(10):
        writer.record(request(uid=f"u{i}", name=f"pv-{i}"), decision())
    # no close(): no shutdown checkpoint, so the last two records are unanchored
    return log, keys


def _rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def _edit(line: bytes, rehash: bool, **changes: object) -> bytes:
    record = json.loads(line)
    record.update(changes)
    if rehash:
        record["hash"] = record_hash(record)
    return to_line(record)


def test_intact_log_verifies_with_exact_summary(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    types = [json.loads(line)["type"] for line in lines_of(log)]
    assert types.count("checkpoint") == 2 and types[5] == types[10] == "checkpoint"
    report = verify_files([log], keys)
    assert report.exit_code == 0
    assert report.summary() == (
        "OK: 12 records (seq 0..11: 10 decisions, 2 checkpoints) in 1 file(s), chain intact; "
        "2 checkpoint signatures valid; anchored up to seq 10; "
        "1 record(s) after the last checkpoint are not yet anchored"
    )
    unchecked = verify_files([log])
    assert "2 checkpoint signatures NOT checked (no --public-key)" in unchecked.summary()


def test_edited_record_is_a_hash_mismatch(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    lines[2] = _edit(lines[2], rehash=False, user={"username": "mallory", "uid": "", "groups": []})
    _rewrite(log, lines)
    report = verify_files([log], keys)
    assert report.exit_code == 1
    assert str(report.broken) == (
        f"{log}:3: seq 2: hash mismatch: the record was changed after it was written"
    )


def test_edited_and_rehashed_record_breaks_the_next_link(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    lines[2] = _edit(lines[2], rehash=True, outcome="exempt")
    _rewrite(log, lines)
    report = verify_files([log], keys)
    assert str(report.broken) == (
        f"{log}:4: seq 3: prev does not match the hash of seq 2 ({log}:3): "
        "seq 2 was changed or replaced"
    )


def test_rewriting_the_whole_chain_after_an_edit_breaks_the_signature(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    records = [json.loads(line) for line in lines]
    records[1]["outcome"] = "exempt"
    for i in range(1, len(records)):  # an attacker recomputes every link and head
        records[i]["prev"] = records[i - 1]["hash"]
        if records[i]["type"] == "checkpoint":
            records[i]["head"] = {"seq": i - 1, "hash": records[i - 1]["hash"]}
        records[i]["hash"] = record_hash(records[i])
    _rewrite(log, [to_line(r) for r in records])
    report = verify_files([log], keys)
    assert str(report.broken) == f"{log}:6: seq 5: checkpoint signature is invalid"
    # without the public key only the chain is checked: the rewrite passes
    assert verify_files([log]).exit_code == 0


def test_rewriting_after_the_last_checkpoint_is_not_detectable(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    """Documented limit: records after the last checkpoint can be rewritten consistently."""
    log, keys = signed_log
    records = [json.loads(line) for line in lines_of(log)]
    records[11]["outcome"] = "exempt"
    records[11]["hash"] = record_hash(records[11])
    _rewrite(log, [to_line(r) for r in records])
    report = verify_files([log], keys)
    assert report.exit_code == 0
    assert report.unanchored == 1
    assert "1 record(s) after the last checkpoint are not yet anchored" in report.summary()


def test_deleted_record_is_a_seq_gap(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    del lines[6]
    _rewrite(log, lines)
    report = verify_files([log], keys)
    assert str(report.broken) == f"{log}:7: seq 7: seq jumps from 5 to 7: 1 record(s) missing"


def test_deleted_checkpoint_is_a_seq_gap(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    del lines[5]
    _rewrite(log, lines)
    report = verify_files([log], keys)
    assert str(report.broken) == f"{log}:6: seq 6: seq jumps from 4 to 6: 1 record(s) missing"


def test_reordered_and_duplicated_records(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    original = lines_of(log)
    swapped = list(original)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    _rewrite(log, swapped)
    assert str(verify_files([log], keys).broken) == (
        f"{log}:3: seq 3: seq jumps from 1 to 3: 1 record(s) missing"
    )
    moved = list(original)
    moved.append(moved.pop(1))  # seq 1 moved to the end
    _rewrite(log, moved)
    assert str(verify_files([log], keys).broken) == (
        f"{log}:2: seq 2: seq jumps from 0 to 2: 1 record(s) missing"
    )
    duplicated = [*original[:4], original[3], *original[4:]]
    _rewrite(log, duplicated)
    assert str(verify_files([log], keys).broken) == (
        f"{log}:5: seq 3: seq 3 follows seq 3: records reordered or duplicated"
    )


def test_truncation(signed_log: tuple[Path, dict[str, Ed25519PublicKey]]) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    checkpoint = json.loads(lines[10])
    # after the last checkpoint: intact, and nothing is left unanchored
    _rewrite(log, lines[:11])
    report = verify_files([log], keys)
    assert report.exit_code == 0
    assert report.summary().endswith("anchored up to seq 10")
    # into an anchored part: the file alone cannot tell...
    _rewrite(log, lines[:7])
    assert verify_files([log], keys).exit_code == 0
    # ...but a checkpoint known from elsewhere (shipped stdout copy) can
    report = verify_files([log], keys, anchors={10: checkpoint["hash"]})
    assert str(report.broken) == (
        f"{log}:7: the chain ends at seq 6 but an anchor names seq 10: "
        "records were removed from the end"
    )
    _rewrite(log, lines)
    assert verify_files([log], keys, anchors={10: checkpoint["hash"]}).exit_code == 0
    report = verify_files([log], keys, anchors={10: "0" * 64})
    assert str(report.broken) == (
        f"{log}:11: seq 10: hash {checkpoint['hash']} differs from the anchor {'0' * 64}"
    )


def test_truncated_head_and_wrong_genesis(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    _rewrite(log, lines[3:])
    report = verify_files([log], keys)
    assert report.exit_code == 0
    assert report.notes == [
        f"{log}:1: the chain starts at seq 3; its link to earlier records (not given) is unchecked"
    ]
    first = json.loads(lines[0])
    first["prev"] = "1" * 64
    first["hash"] = record_hash(first)
    _rewrite(log, [to_line(first), *lines[1:]])
    assert str(verify_files([log], keys).broken) == (
        f"{log}:1: seq 0: the first record's prev is not the genesis value"
    )


def test_checkpoint_by_another_key(
    tmp_path: Path, signed_log: tuple[Path, dict[str, Ed25519PublicKey]]
) -> None:
    log, keys = signed_log
    other = tmp_path / "other"
    other.mkdir()
    generate(str(other / "k"), str(other / "k.pub"))
    other_key = load_public_key(str(other / "k.pub"))
    report = verify_files([log], {key_id(other_key): other_key})
    signer_id = next(iter(keys))
    assert str(report.broken) == f"{log}:6: seq 5: checkpoint signed by unknown key {signer_id}"
    both = {**keys, key_id(other_key): other_key}
    assert verify_files([log], both).exit_code == 0


def test_not_a_record(signed_log: tuple[Path, dict[str, Ed25519PublicKey]]) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    _rewrite(log, [*lines[:3], b"hello\n", *lines[3:]])
    assert str(verify_files([log], keys).broken) == (
        f"{log}:4: not an audit record: not JSON (Expecting value: line 1 column 1 (char 0))"
    )
    dup = lines[3].replace(b'"type":"decision"', b'"type":"decision","type":"decision"', 1)
    _rewrite(log, [*lines[:3], dup, *lines[4:]])
    assert str(verify_files([log], keys).broken) == (
        f"{log}:4: not an audit record: duplicate key 'type'"
    )


def test_torn_final_line(signed_log: tuple[Path, dict[str, Ed25519PublicKey]]) -> None:
    log, keys = signed_log
    lines = lines_of(log)
    _rewrite(log, [*lines, lines[5][:40]])
    report = verify_files([log], keys)
    assert report.status == "torn" and report.exit_code == 3
    assert report.summary() == (
        f"TORN: {log}:13: torn final line (40 bytes without newline: a write was cut short, "
        "e.g. by a crash); before it: 12 records (seq 0..11: 10 decisions, 2 checkpoints) "
        "in 1 file(s), chain intact; 2 checkpoint signatures valid; anchored up to seq 10; "
        "1 record(s) after the last checkpoint are not yet anchored"
    )
    # a partial line that is not last is not a torn line but a break
    _rewrite(log, [*lines[:3], lines[5][:40], *lines[3:]])
    assert str(verify_files([log], keys).broken) == (
        f"{log}:4: not an audit record: not JSON (Expecting ',' delimiter: "
        f"line 1 column {len(lines[3]) + 40} (char {len(lines[3]) + 39}))"
    )


def test_rotated_files_verify_in_order_only(tmp_path: Path) -> None:
    private, _public, keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    writer = AuditWriter(
        str(log),
        signer=load_signer(str(private)),
        max_bytes=4000,
        checkpoint_every=0,
        checkpoint_interval=0,
    )
    for i in range(30):
        writer.record(request(uid=f"u{i}"), decision())
    writer.close()
    files = log_files(log)
    assert len(files) >= 4
    report = verify_files(files, keys)
    assert report.exit_code == 0
    assert report.decisions == 30
    # each rotated file ends with a signed "rotate" checkpoint, the live one with "shutdown"
    for name in files:
        last = json.loads(Path(name).read_bytes().splitlines()[-1])
        assert last["type"] == "checkpoint"
        assert last["reason"] == ("shutdown" if name == str(log) else "rotate")
    # the first record of each new file continues the chain of the previous one
    for older, newer in itertools.pairwise(files):
        last = json.loads(Path(older).read_bytes().splitlines()[-1])
        first = json.loads(Path(newer).read_bytes().splitlines()[0])
        assert (first["seq"], first["prev"]) == (last["seq"] + 1, last["hash"])
        assert newer == str(log) or newer.endswith(f".{first['seq']:012d}")
    missing = [files[0], *files[2:]]
    report = verify_files(missing, keys)
    assert report.broken is not None and report.broken.where == Where(files[2], 1)
    assert "record(s) missing" in report.broken.message
    wrong_order = [files[1], files[0], *files[2:]]
    report = verify_files(wrong_order, keys)
    assert report.broken is not None and report.broken.where == Where(files[0], 1)
    assert report.broken.message.endswith("records reordered or duplicated")


def test_lenient_stream_skips_foreign_lines(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    log, keys = signed_log
    verifier = Verifier(keys, lenient=True)
    foreign = [b"[2026-11-27 08:00:00 +0000] [7] [INFO] Booting worker", b"", b'{"level":"info"}']
    number = 0
    for line in lines_of(log):
        for extra in foreign:
            number += 1
            verifier.feed(Where("<stdin>", number), extra)
        number += 1
        verifier.feed(Where("<stdin>", number), line.rstrip(b"\n"))
    report = verifier.finish()
    assert report.exit_code == 0
    assert report.records == 12 and report.skipped == 36
    assert "36 non-audit line(s) skipped" in report.summary()


def test_rotation_keeps_the_newest_files_and_they_still_verify(tmp_path: Path) -> None:
    private, _public, keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    writer = AuditWriter(
        str(log),
        signer=load_signer(str(private)),
        max_bytes=3000,
        keep_files=2,
        checkpoint_every=0,
        checkpoint_interval=0,
    )
    for i in range(40):
        writer.record(request(uid=f"u{i}"), decision())
    writer.close()
    files = log_files(log)
    assert len(files) == 3
    first = json.loads(Path(files[0]).read_bytes().splitlines()[0])
    assert first["seq"] > 0
    report = verify_files(files, keys)
    assert report.exit_code == 0
    assert report.notes == [
        f"{files[0]}:1: the chain starts at seq {first['seq']}; its link to earlier records "
        "(not given) is unchecked"
    ]


def test_any_single_byte_change_is_detected_or_meaningless(
    signed_log: tuple[Path, dict[str, Ed25519PublicKey]],
) -> None:
    """500 random one-byte edits: verify never raises; every edit that it accepts left
    the content of every record unchanged (e.g. a space turned into a tab)."""
    import random

    log, keys = signed_log
    original = log.read_bytes()
    rng = random.Random(20261127)
    accepted = 0
    for _ in range(500):
        data = bytearray(original)
        data[rng.randrange(len(data))] = rng.randrange(256)
        log.write_bytes(bytes(data))
        report = verify_files([log], keys)
        assert report.status in ("broken", "torn", "ok")
        if report.status == "ok":
            accepted += 1
            assert [json.loads(x) for x in bytes(data).splitlines()] == [
                json.loads(x) for x in original.splitlines()
            ]
    assert accepted < 50
