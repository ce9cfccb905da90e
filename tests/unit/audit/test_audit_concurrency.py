"""Many processes x threads write one log: exactly N records, one verifying chain.

Real processes (each its own AuditWriter, like gunicorn workers) with several
threads, signed checkpoints by count and by a 50 ms timer, size rotation, and
a stdout copy that all processes append to one file (like a container log).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

from tests.unit.audit.audit_fixtures import (
    CHILD,
    PYTHON,
    child_env,
    keypair,
    log_files,
    run_cli,
    verify_files,
)

PROCESSES = 4
THREADS = 8
PER_THREAD = 40
TOTAL = PROCESSES * THREADS * PER_THREAD


def test_processes_and_threads_share_one_chain(tmp_path: Path) -> None:
    private, public, keys = keypair(tmp_path)
    log = tmp_path / "logs" / "audit.log"
    stdout_copy = tmp_path / "container.log"
    fd = os.open(stdout_copy, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        children = [
            subprocess.Popen(
                [
                    PYTHON,
                    str(CHILD),
                    "write",
                    str(log),
                    f"p{p}",
                    str(THREADS),
                    str(PER_THREAD),
                    "--key",
                    str(private),
                    "--max-bytes",
                    "200000",
                    "--every",
                    "64",
                    "--stdout",
                ],
                env=child_env(),
                stdout=fd,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in range(PROCESSES)
        ]
        for child in children:
            _out, err = child.communicate(timeout=300)
            assert child.returncode == 0, err
    finally:
        os.close(fd)

    files = log_files(log)
    assert len(files) >= 3, "the test should exercise rotation"
    report = verify_files(files, keys)
    assert report.exit_code == 0, report.summary()
    assert report.decisions == TOTAL
    assert report.checkpoints >= TOTAL // 64
    assert report.unanchored == 0  # the last close() wrote a shutdown checkpoint

    uids: Counter[str] = Counter()
    for name in files:
        for line in Path(name).read_bytes().splitlines():
            record = json.loads(line)
            if record["type"] == "decision":
                uids[record["request"]["uid"]] += 1
    expected = {
        f"p{p}-{t}-{i}" for p in range(PROCESSES) for t in range(THREADS) for i in range(PER_THREAD)
    }
    assert set(uids) == expected
    assert set(uids.values()) == {1}

    # the stdout copy is the same chain, in the same order, line for line
    copied = stdout_copy.read_bytes()
    assert copied == b"".join(Path(name).read_bytes() for name in files)
    cli = run_cli("verify", "-", "--public-key", str(public), stdin=copied)
    assert cli.exit_code == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith(f"OK: {report.records} records (seq 0..{report.last_seq}: ")

    cli = run_cli("verify", *files, "--public-key", str(public))
    assert cli.exit_code == 0
    assert cli.stdout == report.summary() + "\n"
