"""A writer killed with SIGKILL in the middle of a write leaves a torn line.

A real writer process records decisions with a 32 MiB message in a loop; the
test watches the file grow and kills the process while a line is only partly
on disk. verify must explain the torn line (exit 3, never a traceback), and
the next writer must recover from it so that the chain verifies again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.unit.audit.audit_fixtures import (
    CHILD,
    PYTHON,
    child_env,
    decision,
    request,
    run_cli,
    verify_files,
)
from webhook.audit.writer import AuditWriter

BIG = 32 * 1024 * 1024


def _kill_mid_write(log: Path) -> None:
    """Start the loop writer and SIGKILL it while the file ends in a partial line."""
    child = subprocess.Popen(
        [PYTHON, str(CHILD), "loop", str(log), str(BIG)], env=child_env(), cwd=CHILD.parent
    )
    try:
        deadline = time.monotonic() + 60
        fd = None
        while time.monotonic() < deadline:
            if fd is None:
                try:
                    fd = os.open(log, os.O_RDONLY)
                except FileNotFoundError:
                    continue
            size = os.fstat(fd).st_size
            if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
                child.send_signal(signal.SIGKILL)
                break
        else:
            raise AssertionError("the writer never was seen mid-write")
        child.wait(timeout=30)
        if fd is not None:
            os.close(fd)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_kill_minus_9_mid_write_is_a_torn_final_line_then_recovered(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    _kill_mid_write(log)
    data = log.read_bytes()
    assert not data.endswith(b"\n")
    complete = data.count(b"\n")
    torn = len(data) - (data.rfind(b"\n") + 1)
    assert 0 < torn < BIG

    report = verify_files([log])
    assert report.status == "torn" and report.exit_code == 3
    assert report.records == complete
    assert report.torn is not None and report.torn.line == complete + 1

    cli = run_cli("verify", str(log))
    assert cli.exit_code == 3
    assert cli.stdout.startswith(
        f"TORN: {log}:{complete + 1}: torn final line ({torn} bytes without newline: "
        "a write was cut short, e.g. by a crash); before it: "
    )
    assert "Traceback" not in cli.stderr
    query = run_cli("query", str(log), "-o", "json")
    assert query.exit_code == 0
    assert f"{log}:{complete + 1}: torn final line skipped ({torn} bytes)" in query.stderr

    # the next writer (e.g. the restarted pod) terminates the torn line, writes a
    # recovery record that names it, and goes on with the chain
    writer = AuditWriter(str(log), checkpoint_interval=0)
    writer.record(request(uid="after-crash"), decision())
    writer.close()
    report = verify_files([log])
    assert report.exit_code == 0, report.summary()
    assert report.recoveries == 1
    assert report.decisions == complete + 1
    assert report.notes == [
        f"{log}:{complete + 1}: partial line ({torn} bytes) left by a crash, "
        f"acknowledged by the recovery record at {log}:{complete + 2}"
    ]
    cli = run_cli("verify", str(log), "--allow-unsigned")
    assert cli.exit_code == 0, cli.stdout + cli.stderr
    assert cli.stdout.count("\n") == 1 and cli.stdout.startswith("OK: ")
    query = run_cli("query", str(log), "--name", "pv-nfs")
    assert query.exit_code == 0
    assert f"{log}:{complete + 1}: partial line from a crash skipped" in query.stderr
    assert len(query.stdout.splitlines()) == 1 + complete + 1  # header + decisions

    # changing the torn bytes afterwards is detected: the recovery record no longer matches
    lines = log.read_bytes().split(b"\n")
    lines[complete] = lines[complete][:-1] + b"X"
    log.write_bytes(b"\n".join(lines))
    report = verify_files([log])
    assert report.exit_code == 1
    assert report.broken is not None
    assert str(report.broken).startswith(f"{log}:{complete + 1}: not an audit record: not JSON")
