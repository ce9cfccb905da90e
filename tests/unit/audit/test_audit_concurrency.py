"""Many processes x threads write one log: exactly N records, a verifying chain per process.

Real processes (each its own AuditWriter, like gunicorn workers) with several
threads, signed checkpoints by count and by a 50 ms timer, size rotation, and
a stdout copy that all processes append to one file (like a container log).
Each process claims a slot of its own (audit.log, audit.1.log, ...): no lock
between processes; the mixed stdout copy is told apart by chain id.
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
    run_cli,
    verify_files,
)
from webhook.audit.chain_file import chain_files_in

PROCESSES = 4
THREADS = 8
PER_THREAD = 40
TOTAL = PROCESSES * THREADS * PER_THREAD


def test_processes_and_threads_write_a_chain_each(tmp_path: Path) -> None:
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

    # a process that starts after another ended takes its free slot and continues it
    chains = chain_files_in(str(log.parent))
    assert 1 < len(chains) <= PROCESSES
    assert [Path(live).name for live, _files in chains] == [
        "audit.log",
        *(f"audit.{slot}.log" for slot in range(1, len(chains))),
    ]
    uids: Counter[str] = Counter()
    decisions = 0
    copied = stdout_copy.read_bytes()
    summaries = []
    for _live, files in chains:
        assert len(files) >= 3, "the test should exercise rotation"
        report = verify_files(files, keys)
        assert report.exit_code == 0, report.summary()
        assert report.checkpoints >= report.decisions // 64
        assert report.unanchored == 0  # each close() wrote a shutdown checkpoint
        decisions += report.decisions
        (chain,) = report.chains
        chain_lines = b"".join(Path(name).read_bytes() for name in files)
        for line in chain_lines.splitlines():
            record = json.loads(line)
            assert record["chain"] == chain
            if record["type"] == "decision":
                uids[record["request"]["uid"]] += 1
        # the stdout copy holds each chain's lines in its order, line for line
        mine = [
            line for line in copied.splitlines(keepends=True) if json.loads(line)["chain"] == chain
        ]
        assert b"".join(mine) == chain_lines
        summaries.append(f"chain {chain}: OK: {report.records} records (seq 0..{report.last_seq}: ")
        cli = run_cli("verify", *files, "--public-key", str(public))
        assert cli.exit_code == 0
        assert cli.stdout == report.summary() + "\n"
    assert decisions == TOTAL
    expected = {
        f"p{p}-{t}-{i}" for p in range(PROCESSES) for t in range(THREADS) for i in range(PER_THREAD)
    }
    assert set(uids) == expected
    assert set(uids.values()) == {1}

    cli = run_cli("verify", "-", "--public-key", str(public), stdin=copied)
    assert cli.exit_code == 0, cli.stdout + cli.stderr
    lines = cli.stdout.splitlines()
    assert len(lines) == len(chains)
    assert all(any(line.startswith(prefix) for line in lines) for prefix in summaries), lines
    cli = run_cli(
        "verify", str(log.parent), "--public-key", str(public), "--anchors", str(stdout_copy)
    )
    assert cli.exit_code == 0, cli.stdout + cli.stderr
    assert cli.stdout.splitlines() == [
        f"{live}: {verify_files(files, keys).summary()}" for live, files in chains
    ]
