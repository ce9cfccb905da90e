"""Writer behaviour that needs no extra processes: head from the file, timers, shutdown."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.unit.audit.audit_fixtures import decision, keypair, log_files, request, verify_files
from webhook.audit import chain_file
from webhook.audit.chain_file import chain_files_in, read_tail
from webhook.audit.signing import load_signer
from webhook.audit.writer import AuditWriter


def test_each_writer_holds_a_chain_of_its_own_and_a_free_slot_is_continued(
    tmp_path: Path,
) -> None:
    """Two writers on one log (as two gunicorn workers) write two chains, slot 0
    (audit.log) and slot 1 (audit.1.log), each rotating on its own; a writer opened
    after the first closed (a restarted worker) takes the free slot 0 and continues
    its chain, with its chain id; rotated files beyond keep_files are counted over
    both slots."""
    log = tmp_path / "audit.log"
    a = AuditWriter(str(log), max_bytes=2500, checkpoint_interval=0)
    b = AuditWriter(str(log), max_bytes=2500, checkpoint_interval=0)
    assert (a.chain_path, b.chain_path) == (str(log), str(tmp_path / "audit.1.log"))
    assert a.path == b.path == str(log)
    for i in range(30):
        writer = a if i % 3 else b
        writer.record(request(uid=f"u{i}"), decision())
    a.close()
    c = AuditWriter(str(log), max_bytes=2500, checkpoint_interval=0)
    assert c.chain_path == str(log)
    c.record(request(uid="u30"), decision())
    c.close()
    b.close()
    chains = chain_files_in(str(tmp_path))
    assert [live for live, _files in chains] == [str(log), str(tmp_path / "audit.1.log")]
    decisions, ids = 0, []
    for live, files in chains:
        assert files == log_files(Path(live)) and len(files) > 2
        report = verify_files(files)
        assert report.exit_code == 0, report.summary()
        assert report.first_seq == 0
        decisions += report.decisions
        ids.append(report.chains)
    assert decisions == 31
    assert len(ids[0]) == len(ids[1]) == 1 and ids[0] != ids[1]

    d = AuditWriter(str(log), max_bytes=2500, keep_files=3, checkpoint_interval=0)
    for i in range(12):
        d.record(request(uid=f"d{i}"), decision())
    d.close()
    rotated = sorted(p.name for p in tmp_path.glob("audit*.log.*"))
    assert len(rotated) == 3, rotated
    assert all(name.startswith("audit.log.") for name in rotated)  # the newest 3
    report = verify_files(log_files(log))
    assert report.exit_code == 0, report.summary()
    assert report.last_seq is not None and report.first_seq is not None
    assert report.first_seq > 0  # earlier files pruned, as verify notes


def test_a_new_writer_continues_an_existing_chain(tmp_path: Path) -> None:
    private, _public, keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    for run in range(3):  # three pod restarts
        writer = AuditWriter(str(log), signer=load_signer(str(private)), checkpoint_interval=0)
        for i in range(4):
            writer.record(request(uid=f"r{run}-{i}"), decision())
        writer.close()
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert [r["type"] for r in records] == (["decision"] * 4 + ["checkpoint"]) * 3
    assert [r["reason"] for r in records if r["type"] == "checkpoint"] == ["shutdown"] * 3
    report = verify_files([log], keys)
    assert report.exit_code == 0 and report.unanchored == 0


def test_interval_checkpoints_only_when_there_is_something_new(tmp_path: Path) -> None:
    private, _public, keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    writer = AuditWriter(
        str(log), signer=load_signer(str(private)), checkpoint_every=0, checkpoint_interval=0.05
    )

    def anchored() -> None:
        deadline = time.monotonic() + 20
        while json.loads(log.read_bytes().splitlines()[-1])["type"] != "checkpoint":
            assert time.monotonic() < deadline, "no interval checkpoint"
            time.sleep(0.01)
        time.sleep(0.3)  # more ticks, but no further checkpoint: the head is anchored

    writer.record(request(uid="1"), decision())
    anchored()
    writer.record(request(uid="2"), decision())
    anchored()
    writer.close()
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert [(r["type"], r.get("reason")) for r in records] == [
        ("decision", None),
        ("checkpoint", "interval"),
        ("decision", None),
        ("checkpoint", "interval"),
    ]
    assert verify_files([log], keys).exit_code == 0


def test_count_checkpoints_land_on_multiples(tmp_path: Path) -> None:
    private, _public, _keys = keypair(tmp_path)
    log = tmp_path / "audit.log"
    writer = AuditWriter(
        str(log), signer=load_signer(str(private)), checkpoint_every=4, checkpoint_interval=0
    )
    for i in range(10):
        writer.record(request(uid=f"{i}"), decision())
    writer.close()
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert [r["seq"] for r in records if r["type"] == "checkpoint"] == [4, 8, 12]
    # the last decision (seq 11) was anchored by count, so close() had nothing to add
    assert [r["reason"] for r in records if r["type"] == "checkpoint"] == ["count"] * 3
    assert records[-1]["seq"] == 12


def test_read_tail_finds_the_last_complete_line(tmp_path: Path) -> None:
    import os

    path = tmp_path / "f"
    long_line = b"y" * 200_000
    cases = [
        (b"", (None, b"")),
        (b"abc", (None, b"abc")),
        (b"abc\n", (b"abc", b"")),
        (b"a\nb\n", (b"b", b"")),
        (b"a\nb\npart", (b"b", b"part")),
        (b"a\n" + long_line + b"\n" + b"z" * 70_000, (long_line, b"z" * 70_000)),
    ]
    for content, expected in cases:
        path.write_bytes(content)
        fd = os.open(path, os.O_RDONLY)
        try:
            assert read_tail(fd, len(content)) == expected
        finally:
            os.close(fd)


def _reserved(path: Path) -> int:
    """Bytes allocated to ``path`` past its size."""
    st = path.stat()
    return max(0, st.st_blocks * 512 - st.st_size)


def test_space_is_reserved_past_the_end_and_given_back(tmp_path: Path) -> None:
    """An append lands in space reserved ahead (fallocate KEEP_SIZE: the file, its size
    and its content stay as without), so its fdatasync has no block allocation to
    journal; rotation, close and the next writer after a crash give the space back."""
    assert chain_file._fallocate is not None, "fallocate from libc (Linux)"
    st = os.statvfs(tmp_path)
    assert st.f_bavail * st.f_frsize >= chain_file.PREALLOCATE_MIN_FREE, "room for the test"
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), max_bytes=8000, checkpoint_interval=0)
    writer.record(request(uid="u0"), decision())
    assert _reserved(log) >= chain_file.PREALLOCATE_BYTES // 2
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith(b"\n")
    assert log.stat().st_size == len(lines[0])
    for i in range(1, 12):  # past max_bytes: rotated
        writer.record(request(uid=f"u{i}"), decision())
    rotated = [Path(name) for name in log_files(log)[:-1]]
    assert rotated and all(_reserved(name) < 64 * 1024 for name in rotated)
    writer.close()
    assert _reserved(log) < 64 * 1024
    report = verify_files(log_files(log))
    assert (report.exit_code, report.decisions) == (0, 12), report.summary()

    # a killed writer leaves its reservation behind; the next one of the slot gives it back
    fd = os.open(log, os.O_RDWR)
    try:
        assert chain_file._fallocate(fd, log.stat().st_size, chain_file.PREALLOCATE_BYTES)
    finally:
        os.close(fd)
    assert _reserved(log) >= chain_file.PREALLOCATE_BYTES // 2
    again = AuditWriter(str(log), checkpoint_interval=0)
    assert _reserved(log) < 64 * 1024
    again.close()
