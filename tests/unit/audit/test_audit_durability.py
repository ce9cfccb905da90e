"""A full disk, a read-only disk, an unusable path: ``record`` raises one clear line.

The full disk is real: a 64 KiB tmpfs mounted for the test (the tests run as
root, here and in CI).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.audit.audit_fixtures import decision, keypair, request, verify_files
from webhook.audit import AuditWriteError, open_recorder
from webhook.audit.signing import AuditKeyError
from webhook.audit.writer import AuditWriter


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_raises_cleanly_and_leaves_a_verifiable_log(tiny_tmpfs: Path) -> None:
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"x" * 16384)
    log = tiny_tmpfs / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0)
    written = 0
    with pytest.raises(AuditWriteError) as caught:
        for i in range(10_000):
            writer.record(request(uid=f"u{i}"), decision())
            written += 1
    message = str(caught.value)
    assert message == (
        f"audit log {log}: cannot write record seq {written}: No space left on device (ENOSPC)"
    )
    assert "\n" not in message
    assert written > 20  # the disk really held records before it filled
    # no partial line: the failed write was truncated away
    assert log.read_bytes().endswith(b"\n")
    report = verify_files([log])
    assert report.exit_code == 0 and report.decisions == written
    # it keeps failing while the disk is full...
    with pytest.raises(AuditWriteError, match="No space left on device"):
        writer.record(request(uid="again"), decision())
    # ...and goes on with the same chain once space is freed
    filler.unlink()
    writer.record(request(uid="after"), decision())
    writer.close()
    report = verify_files([log])
    assert report.exit_code == 0
    assert (report.decisions, report.last_seq) == (written + 1, written)


def test_read_only_disk(tiny_tmpfs: Path) -> None:
    log = tiny_tmpfs / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0)
    writer.record(request(), decision())
    writer.close()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    try:
        with pytest.raises(AuditWriteError) as caught:
            AuditWriter(str(log), checkpoint_interval=0)
        lock = tiny_tmpfs / ".audit.log.lock"
        assert str(caught.value) == (
            f"audit log {log}: cannot open lock file {lock}: Read-only file system (EROFS)"
        )
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_tmpfs)], check=True)


def test_unusable_paths_fail_at_start(tmp_path: Path) -> None:
    (tmp_path / "dir.log").mkdir()
    with pytest.raises(AuditWriteError) as caught:
        open_recorder(str(tmp_path / "dir.log"))
    assert str(caught.value) == (
        f"audit log {tmp_path / 'dir.log'}: cannot open: Is a directory (EISDIR)"
    )
    (tmp_path / "file").write_text("x")
    with pytest.raises(AuditWriteError) as caught:
        open_recorder(str(tmp_path / "file" / "audit.log"))
    assert str(caught.value) == (
        f"audit log {tmp_path / 'file' / 'audit.log'}: {tmp_path / 'file'} exists "
        "and is not a directory"
    )
    garbage = tmp_path / "garbage.log"
    garbage.write_text("not json\n")
    with pytest.raises(AuditWriteError) as caught:
        open_recorder(str(garbage))
    assert str(caught.value) == (
        f"audit log {garbage}: last line is not an audit record (not JSON (Expecting value: "
        "line 1 column 1 (char 0))); refusing to extend the chain"
    )


def test_key_problems_and_options(tmp_path: Path) -> None:
    with pytest.raises(AuditKeyError) as caught:
        open_recorder(str(tmp_path / "a.log"), key_file=str(tmp_path / "missing.pem"))
    assert (
        str(caught.value)
        == f"{tmp_path / 'missing.pem'}: cannot read key: No such file or directory"
    )
    _private, public, _keys = keypair(tmp_path)
    with pytest.raises(AuditKeyError, match="not an unencrypted PEM private key"):
        open_recorder(str(tmp_path / "a.log"), key_file=str(public))
    with pytest.raises(ValueError, match="a stdout copy needs an audit log file"):
        open_recorder(None, stdout=True)
    null = open_recorder(None)
    null.record(request(), decision())
    null.close()


def test_writes_reach_the_disk_before_record_returns(tmp_path: Path) -> None:
    """What another process sees right after ``record`` returns is the whole record."""
    log = tmp_path / "audit.log"
    writer = AuditWriter(str(log), checkpoint_interval=0)
    for i in range(5):
        writer.record(request(uid=f"u{i}"), decision())
        seen = subprocess.run(["wc", "-l", str(log)], capture_output=True, text=True, check=True)
        assert seen.stdout.split()[0] == str(i + 1)
    writer.close()
    with pytest.raises(AuditWriteError, match="the writer is closed"):
        writer.record(request(), decision())


def test_dev_full_as_the_log_raises_enospc(tmp_path: Path) -> None:
    """The same failure without a mount: the log is a symlink to /dev/full."""
    log = tmp_path / "audit.log"
    log.symlink_to("/dev/full")
    writer = AuditWriter(str(log), checkpoint_interval=0)
    with pytest.raises(AuditWriteError) as caught:
        writer.record(request(), decision())
    assert str(caught.value) == (
        f"audit log {log}: cannot write record seq 0: No space left on device (ENOSPC)"
    )
    writer.close()
