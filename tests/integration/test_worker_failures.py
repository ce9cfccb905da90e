"""A worker that cannot record or cannot boot stays local, and everything recovers by
itself (issue 17, item 4), on the real ``nfsguard serve`` with its audit log on a
small tmpfs filled for real (ENOSPC), on 127.0.0.1.

Before: with the audit disk full and a torn last line, a restarted worker failed in
``open_recorder``, gunicorn logged "Worker failed to boot", the master exited and
took the healthy worker with it; it stayed down after space was freed; ``/readyz``
said 200 all along.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.samples import pv
from tests.integration.conftest import (
    NFSGUARD,
    POLICIES,
    ServerHandle,
    admission_review,
    apiserver_session,
    audit_chains,
    start_server,
)

WAIT = 60.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fresh_get(handle: ServerHandle, path: str) -> requests.Response:
    """On a new connection, so either worker may answer."""
    with apiserver_session(handle.ca_crt) as session:
        return session.get(handle.url(path), timeout=15)


def fresh_review(handle: ServerHandle, name: str) -> requests.Response:
    review = admission_review(pv(name, mount_options=["nfsvers=4.2"]))
    with apiserver_session(handle.ca_crt) as session:
        return session.post(handle.url("/mutate?timeout=10s"), json=review, timeout=15)


def until(what: str, check: Any, handle: ServerHandle) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        found = check()
        if found:
            return found
        assert handle.alive(), handle.log_text()[-3000:]
        assert time.monotonic() < deadline, f"{what}\n{handle.log_text()[-3000:]}"
        time.sleep(0.2)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem refuses (ENOSPC)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")  # the last bytes too
    finally:
        os.close(fd)
    return filler


def readyz_bodies(handle: ServerHandle, count: int = 12) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for _ in range(count):
        r = fresh_get(handle, "/readyz")
        out.append((r.status_code, r.json()))
    return out


def every_worker_ready(handle: ServerHandle, workers: int = 2) -> bool:
    """Every probe ready and answered by each worker: a probe lands on one worker at
    random, so all-200 from a handful of probes alone can miss the one still booting."""
    bodies = readyz_bodies(handle, 12)
    ready = {b.get("reload", {}).get("worker") for status, b in bodies if status == 200}
    return all(status == 200 for status, _ in bodies) and len(ready) == workers


def booting(handle: ServerHandle) -> dict[str, Any] | None:
    """The /readyz of a worker that could not build what it serves, if one answered."""
    r = fresh_get(handle, "/readyz")
    body: dict[str, Any] = r.json()
    return body if r.status_code == 503 and "starting" in body else None


def verify(log: Path, *args: str) -> None:
    """Every worker's chain of ``log`` verifies (each worker writes a chain of its own)."""
    chains = audit_chains(log)
    assert chains, f"no audit chain beside {log}"
    for files in chains:
        verified = subprocess.run(
            [str(NFSGUARD), "audit", "verify", *map(str, files), *args],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_full_audit_disk_makes_every_worker_unready_until_there_is_room(
    small_disk: Path,
) -> None:
    log = small_disk / "audit.log"
    handle = start_server(
        [POLICIES], small_disk.parent / "server", ["--workers", "2", "--audit-log", str(log)]
    )
    try:
        for i in range(3):
            assert fresh_review(handle, f"pv-{i}").status_code == 200
        filler = fill(small_disk)
        # not ready on every worker, and reviews are 503, never an unrecorded 200
        bodies = readyz_bodies(handle)
        assert {status for status, _ in bodies} == {503}, bodies
        assert all("cannot be recorded" in b["audit"]["reason"] for _, b in bodies)
        # (a record may still fit in the log's last page; the next ones cannot)
        statuses = [fresh_review(handle, f"pv-full-{i}").status_code for i in range(20)]
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        # a worker restarted meanwhile comes up (not ready), the master stays
        victim = bodies[0][1]["reload"]["worker"]
        os.kill(victim, signal.SIGKILL)
        until(
            "no replacement worker answered",
            lambda: (
                victim
                not in {b.get("reload", {}).get("worker") for _, b in readyz_bodies(handle, 4)}
            ),
            handle,
        )
        assert {status for status, _ in readyz_bodies(handle)} == {503}
        # room again: every worker becomes ready by itself, without a review to say so
        filler.unlink()
        until(
            "the server did not recover after space was freed",
            lambda: every_worker_ready(handle),
            handle,
        )
        for i in range(6):
            answer = fresh_review(handle, f"pv-after-{i}")
            assert answer.status_code == 200, answer.text
        verify(log, "--allow-unsigned")
        assert "Worker failed to boot" not in handle.log_text()
    finally:
        handle.stop()


def test_a_worker_that_cannot_boot_stays_local_and_retries(tmp_path: Path) -> None:
    """Any boot exception (here the audit signing key gone when a worker restarts):
    that worker answers 503 and is not ready, retries, and serves once the cause is
    gone; the master and the healthy worker never stop."""
    key, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    made = subprocess.run(
        [str(NFSGUARD), "audit", "keygen", "--private-key", str(key), "--public-key", str(public)],
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    handle = start_server(
        [POLICIES], tmp_path / "server", ["--workers", "2", "--audit-key", str(key)]
    )
    try:
        assert fresh_review(handle, "pv-before").status_code == 200
        until(  # both workers serving before the key goes
            "not both workers ready",
            lambda: (
                len({b["reload"]["worker"] for st, b in readyz_bodies(handle, 8) if st == 200}) == 2
            ),
            handle,
        )
        victim = fresh_get(handle, "/readyz").json()["reload"]["worker"]
        key.rename(tmp_path / "audit.key.away")
        os.kill(victim, signal.SIGKILL)
        stuck = until("no worker said it could not start", lambda: booting(handle), handle)
        assert "audit.key" in stuck["starting"] and stuck["worker"] != victim
        assert fresh_get(handle, "/livez").status_code == 200
        # the healthy worker serves on; the booting one refuses with 503 (failurePolicy)
        seen = until(
            "not both workers' answers seen",
            lambda: (
                {r.status_code for r in (fresh_review(handle, "pv-during") for _ in range(12))}
                >= {200, 503}
            ),
            handle,
        )
        assert seen
        time.sleep(3)  # retries meanwhile: still no master exit
        assert handle.alive()
        assert "Worker failed to boot" not in handle.log_text()
        (tmp_path / "audit.key.away").rename(key)
        until(
            "the worker did not recover once the key was back",
            lambda: every_worker_ready(handle),
            handle,
        )
        statuses = {fresh_review(handle, f"pv-after-{i}").status_code for i in range(8)}
        assert statuses == {200}
        assert "serving after" in handle.log_text()
    finally:
        handle.stop()
    verify(handle.audit_log, "--public-key", str(public))  # checkpointed at the stop


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.write_bytes(os.urandom(3000)), "last line is not an audit record"),
        (lambda p: p.write_bytes(b'{"seq": 0}\n'), "last line is not an audit record"),
        (lambda p: None, "exists and is not a directory"),
    ],
    ids=["random bytes", "not a record", "parent is a file"],
)
def test_serve_refuses_an_audit_log_it_cannot_extend_in_one_line(
    tmp_path: Path, make: Any, says: str
) -> None:
    """Before, a corrupt or unusable log made every worker fail to boot (a traceback,
    the master gone); now ``serve`` says so in one line and exits 2."""
    log = tmp_path / "audit.log"
    if says == "exists and is not a directory":
        (tmp_path / "file").write_text("x")
        log = tmp_path / "file" / "audit.log"
    else:
        make(log)
    result = subprocess.run(
        [
            *(str(NFSGUARD), "serve", "--policy", str(POLICIES)),
            *("--tls-dir", str(tmp_path / "tls"), "--port", "1", "--audit-log", str(log)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and str(log) in lines[0], result.stderr
