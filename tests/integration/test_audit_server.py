"""The audit trail of a real `nfsguard serve` (gunicorn, several gthread workers, TLS).

Concurrent HTTPS AdmissionReviews, as kube-apiserver sends them, must leave
exactly one record per recorded decision (none for compliant objects), one
hash chain shared by the workers, a signed shutdown checkpoint, and the same
records on stdout. A full audit disk must turn reviews into HTTP 503.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
NFSGUARD = Path(sys.executable).parent / "nfsguard"
POLICY = REPO / "policies"
HOST = "127.0.0.1"
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, */*",
    "User-Agent": "kube-apiserver-admission",
}


def review(
    *, version: str, name: str = "", generate_name: str = "", dry_run: bool = False
) -> dict[str, Any]:
    """A PV CREATE review for the site policy's pinned export (pin to 4.0)."""
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": generate_name}
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "PersistentVolume"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumes"},
            "requestKind": {"group": "", "version": "v1", "kind": "PersistentVolume"},
            "requestResource": {"group": "", "version": "v1", "resource": "persistentvolumes"},
            "name": name,
            "operation": "CREATE",
            "userInfo": {
                "username": "kubernetes-admin",
                "groups": ["system:masters", "system:authenticated"],
            },
            "object": {
                "kind": "PersistentVolume",
                "apiVersion": "v1",
                "metadata": metadata,
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "mountOptions": [f"nfsvers={version}", "hard"],
                    "volumeMode": "Filesystem",
                    "nfs": {"server": "192.168.100.7", "path": "/data1/k8sdev/hl"},
                },
                "status": {"phase": "Pending"},
            },
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    workdir: Path
    audit_log: Path
    key: Path | None = None
    workers: int = 3
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    output: Path = field(init=False)

    def start(self) -> Server:
        tls = self.workdir / "tls"
        for _ in range(3):
            self.port = free_port()
            self.output = self.workdir / f"serve-{self.port}.out"
            argv = [
                str(NFSGUARD),
                "serve",
                "--policy",
                str(POLICY),
                "--tls-dir",
                str(tls),
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--threads",
                "8",
                "--audit-log",
                str(self.audit_log),
                "--audit-stdout",
            ]
            if self.key is not None:
                argv += ["--audit-key", str(self.key)]
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            with self.output.open("wb") as out:
                self.proc = subprocess.Popen(
                    argv, stdout=out, stderr=out, env=env, start_new_session=True
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    r = requests.get(
                        f"https://{HOST}:{self.port}/readyz", verify=self.ca, timeout=2
                    )
                    if r.status_code == 200:
                        return self
                except (requests.RequestException, OSError):
                    pass
                time.sleep(0.2)
            text = self.output.read_text(errors="replace")
            self.stop()
            if "in use" not in text.lower():
                raise RuntimeError(f"nfsguard serve did not become ready:\n{text[-3000:]}")
        raise RuntimeError("no free port")

    @property
    def ca(self) -> str:
        return str(self.workdir / "tls" / "ca.crt")

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}/mutate?timeout=10s"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def nfsguard(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(NFSGUARD), "audit", *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def test_concurrent_reviews_give_one_record_each_and_one_chain(
    tmp_path: Path, servers: list[Server]
) -> None:
    key, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    made = nfsguard("keygen", "--private-key", str(key), "--public-key", str(public))
    assert made.returncode == 0, made.stderr
    log = tmp_path / "audit" / "audit.log"
    server = Server(tmp_path, log, key=key).start()
    servers.append(server)

    # 240 reviews from 16 clients with kept-alive connections: 2/3 must be pinned
    # (recorded), 1/3 are already on 4.0 (compliant: answered, not recorded)
    bodies = []
    for i in range(240):
        if i % 3 == 2:
            bodies.append(review(version="4.0", name=f"pv-ok-{i}"))
        elif i % 5 == 0:
            bodies.append(review(version="4.2", generate_name="pv-gen-", dry_run=True))
        else:
            bodies.append(review(version="4.2", name=f"pv-{i}"))
    local = threading.local()

    def send(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        r = session.post(
            server.url, data=json.dumps(body), headers=HEADERS, verify=server.ca, timeout=30
        )
        assert r.status_code == 200, r.text
        return body["request"]["uid"], r.json()["response"]

    with ThreadPoolExecutor(16) as pool:
        answers = dict(pool.map(send, bodies))
    assert len(answers) == 240
    mutated = {uid for uid, resp in answers.items() if "patch" in resp}
    assert len(mutated) == 160
    for uid in mutated:
        patch = json.loads(base64.b64decode(answers[uid]["patch"]))
        assert patch == [
            {"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0", "hard"]}
        ]

    # while serving: exactly one record per mutated review, nothing else
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    decisions = [r for r in records if r["type"] == "decision"]
    assert sorted(r["request"]["uid"] for r in decisions) == sorted(mutated)
    assert [r["seq"] for r in records] == list(range(len(records)))
    by_uid = {r["request"]["uid"]: r for r in decisions}
    for body in bodies:
        request = body["request"]
        if request["uid"] not in mutated:
            continue
        record = by_uid[request["uid"]]
        assert record["outcome"] == "mutated"
        assert record["rule"] == "incident-node003-hang"
        assert record["policy"]["name"] == "site-rules"
        assert record["user"] == {
            "username": "kubernetes-admin",
            "uid": "",
            "groups": ["system:masters", "system:authenticated"],
        }
        assert record["request"]["dryRun"] is request["dryRun"]
        expected_name = request["name"] or "pv-gen-*"
        assert record["request"]["name"] == expected_name
        assert (record["before"]["version"], record["after"]["version"]) == ("4.2", "4.0")
        assert record["target"]["export"] == "192.168.100.7:/data1/k8sdev/hl"

    checked = nfsguard("verify", str(log), "--public-key", str(public))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # clean shutdown: every worker closes its writer; the chain ends with one signed
    # shutdown checkpoint, so nothing is left unanchored
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0
    final = nfsguard("verify", str(log), "--public-key", str(public))
    assert final.returncode == 0, final.stdout + final.stderr
    summary = final.stdout.decode()
    assert summary.startswith("OK: ")
    assert "160 decisions" in summary
    assert "not yet anchored" not in summary and "no checkpoint" not in summary
    last = json.loads(log.read_bytes().splitlines()[-1])
    assert (last["type"], last["reason"]) == ("checkpoint", "shutdown")

    # stdout (what `kubectl logs` shows) carries the same chain among gunicorn's lines
    output = server.output.read_bytes()
    copied = [line for line in output.splitlines() if line.startswith(b'{"schema"')]
    assert copied == log.read_bytes().splitlines()
    from_logs = nfsguard("verify", "-", "--public-key", str(public), stdin=output)
    assert from_logs.returncode == 0, from_logs.stdout + from_logs.stderr
    logs_summary = from_logs.stdout.decode()
    assert logs_summary.startswith(summary.rstrip("\n") + "; ")
    assert logs_summary.endswith(" non-audit line(s) skipped\n")

    # an auditor's question: which PVs did that rule pin, and who asked?
    table = nfsguard("query", str(log), "--rule", "incident-node003-hang", "--outcome", "mutated")
    assert table.returncode == 0
    assert len(table.stdout.decode().splitlines()) == 1 + 160


def test_full_audit_disk_turns_reviews_into_503(tmp_path: Path, servers: list[Server]) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], check=True)
    try:
        server = Server(tmp_path, disk / "audit.log", workers=2).start()
        servers.append(server)
        statuses: list[int] = []
        session = requests.Session()
        for i in range(200):
            r = session.post(
                server.url,
                data=json.dumps(review(version="4.2", name=f"pv-{i}")),
                headers=HEADERS,
                verify=server.ca,
                timeout=30,
            )
            statuses.append(r.status_code)
            if r.status_code != 200:
                assert r.status_code == 503
                assert "decision could not be recorded" in r.text
                assert "No space left on device (ENOSPC)" in r.text
                break
        assert statuses[-1] == 503 and statuses.count(200) == len(statuses) - 1
        # every 200 answer was recorded; the log holds no partial line and verifies
        records = (disk / "audit.log").read_bytes()
        assert records.endswith(b"\n")
        assert records.count(b"\n") == statuses.count(200)
        checked = nfsguard("verify", str(disk / "audit.log"))
        assert checked.returncode == 0, checked.stdout
        server.stop()
    finally:
        for server in servers:
            server.stop()
        subprocess.run(["umount", "-l", str(disk)], check=True)
