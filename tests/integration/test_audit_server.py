"""The audit trail of a real `nfsguard serve` (gunicorn, several gthread workers, TLS).

Concurrent HTTPS AdmissionReviews, as kube-apiserver sends them, must leave
exactly one record per recorded decision (none for compliant objects), one
hash chain shared by the workers, a signed shutdown checkpoint, and the same
records on stdout. A full audit disk must turn reviews into HTTP 503.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.integration.conftest import (
    NFSGUARD,
    POLICIES,
    ServerHandle,
    admission_review,
    apiserver_session,
    audit_chains,
    post_review,
    start_server,
)

RECORDED = {"mutated", "denied", "warned", "audited", "exempt"}


def pv(
    server: str, path: str, version: str, *, name: str = "", generate: str = ""
) -> dict[str, Any]:
    """A PersistentVolume as the apiserver hands it to admission (defaults applied)."""
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": generate}
    return {
        "kind": "PersistentVolume",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "mountOptions": [f"nfsvers={version}", "hard"],
            "volumeMode": "Filesystem",
            "nfs": {"server": server, "path": path},
        },
        "status": {"phase": "Pending"},
    }


#: (server, path, nfs version) -> what tests/fixtures/policies decide
MIX = [
    ("192.168.100.7", "/data1/k8sdev/hl", "4.2"),  # pin: mutated
    ("192.168.100.7", "/data1/k8sdev/hl", "4.0"),  # already 4.0: compliant, not recorded
    ("filer1.legacy.corp", "/vol", "4.1"),  # deny: denied
    ("10.30.4.5", "/lab", "4.2"),  # warn: warned
    ("acct.file.core.windows.net", "/share", "4.1"),  # exempt
    ("172.16.0.9", "/elsewhere", "4.2"),  # no rule: not recorded
]


def nfsguard(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(NFSGUARD), "audit", *args], input=stdin, capture_output=True, timeout=120, check=False
    )


def test_concurrent_reviews_give_one_record_each_and_one_chain(tmp_path: Path) -> None:
    key, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    made = nfsguard("keygen", "--private-key", str(key), "--public-key", str(public))
    assert made.returncode == 0, made.stderr
    server = start_server(
        [POLICIES],
        tmp_path / "server",
        ["--workers", "3", "--threads", "8", "--audit-key", str(key), "--audit-stdout"],
    )
    try:
        _concurrent_reviews(server, public)
    finally:
        server.stop()


def _concurrent_reviews(server: ServerHandle, public: Path) -> None:
    log = server.audit_log
    # 240 reviews from 16 clients on kept-alive connections, every outcome mixed in
    reviews = []
    for i in range(240):
        host, path, version = MIX[i % len(MIX)]
        if i % 7 == 0:
            obj = pv(host, path, version, generate="pv-gen-")
        else:
            obj = pv(host, path, version, name=f"pv-{i}")
        reviews.append(admission_review(obj, uid=str(uuid.uuid4()), dry_run=i % 5 == 0))
    local = threading.local()

    def send(review: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = apiserver_session(server.ca_crt)
        r = session.post(
            server.url("/mutate?timeout=10s"), data=json.dumps(review).encode(), timeout=30
        )
        assert r.status_code == 200, r.text
        return review["request"]["uid"], r.json()["response"]

    with ThreadPoolExecutor(16) as pool:
        answers = dict(pool.map(send, reviews))
    assert len(answers) == 240
    outcome = {
        uid: (resp.get("auditAnnotations") or {}).get("outcome") for uid, resp in answers.items()
    }
    recorded = {uid for uid, o in outcome.items() if o in RECORDED}
    assert {outcome[r["request"]["uid"]] for r in reviews} >= RECORDED - {"audited"}
    assert len(recorded) == 160  # 4 of every 6 reviews
    for uid, resp in answers.items():
        if outcome[uid] == "mutated":
            assert json.loads(base64.b64decode(resp["patch"])) == [
                {"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0", "hard"]}
            ]
        assert resp["allowed"] is (outcome[uid] != "denied")

    # while serving: exactly one record per recorded decision, each worker's chain one
    # gap-free sequence. A snapshot: a worker's interval checkpoint (every 60 s with
    # something new) may be appended at any moment, so what verify says is checked
    # against what it was given.
    chains = server.audit_chains()
    assert 1 <= len(chains) <= 3  # one chain per worker (--workers 3), none shared
    records: list[dict[str, Any]] = []
    for index, files in enumerate(chains):
        (live,) = files  # no rotation at this size
        served = live.read_bytes()
        snapshot = live.parent.parent / f"audit-snapshot-{index}.jsonl"
        snapshot.write_bytes(served[: served.rfind(b"\n") + 1])  # a line being written: not yet
        mine = [json.loads(line) for line in snapshot.read_bytes().splitlines()]
        assert [r["seq"] for r in mine] == list(range(len(mine)))
        if mine:  # (a worker that got no review has an empty chain)
            assert len({r["chain"] for r in mine}) == 1
            _check_snapshot(snapshot, mine, public)
        records += mine
    decisions = [r for r in records if r["type"] == "decision"]
    assert sorted(r["request"]["uid"] for r in decisions) == sorted(recorded)
    by_uid = {r["request"]["uid"]: r for r in decisions}
    for review in reviews:
        request = review["request"]
        record = by_uid.get(request["uid"])
        if record is None:
            continue
        assert record["outcome"] == outcome[request["uid"]]
        assert record["user"] == {
            "username": "kubernetes-admin",
            "uid": "",
            "groups": ["system:masters", "system:authenticated"],
        }
        assert record["request"]["dryRun"] is request["dryRun"]
        assert record["request"]["name"] == (request["name"] or "pv-gen-*")
        spec = request["object"]["spec"]
        assert record["target"]["export"] == f"{spec['nfs']['server']}:{spec['nfs']['path']}"
        if record["outcome"] == "mutated":
            assert record["rule"] == "incident-node003-hang"
            assert record["policy"]["name"] == "site-rules"
            assert (record["before"]["version"], record["after"]["version"]) == ("4.2", "4.0")
        if record["outcome"] == "denied":
            assert record["rule"] == "legacy-filers-deny" and record["patch"] == []

    # clean shutdown: every worker closes its writer; each chain ends with one signed
    # shutdown checkpoint, so nothing is left unanchored
    server.stop()
    assert server.process.returncode == 0
    final = nfsguard("verify", str(log.parent), "--public-key", str(public))
    assert final.returncode == 0, final.stdout + final.stderr
    lines = final.stdout.decode().splitlines()
    chains = server.audit_chains()
    assert [line.split(": ", 1)[0] for line in lines] == (
        [str(files[-1]) for files in chains] if len(chains) > 1 else ["OK"]
    )
    summaries = [line.split(": ", 1)[1] if len(chains) > 1 else line for line in lines]
    assert all(summary.startswith("OK: ") for summary in summaries), lines
    counted = [re.findall(r"(\d+) decisions?,", t) or ["0"] for t in summaries]  # 0: empty
    assert sum(int(found[0]) for found in counted) == 160
    assert not any("not yet anchored" in t or "no checkpoint" in t for t in summaries)
    written = [files for files in chains if files[-1].stat().st_size]
    assert written
    for files in written:
        last = json.loads(files[-1].read_bytes().splitlines()[-1])
        assert (last["type"], last["reason"]) == ("checkpoint", "shutdown")

    # stdout (what `kubectl logs` shows) carries every chain among gunicorn's lines,
    # each in its order; verify tells them apart by chain id
    output = server.log_path.read_bytes()
    copied = [line for line in output.splitlines() if line.startswith(b'{"schema"')]
    for files in written:
        lines_of_chain = b"".join(f.read_bytes() for f in files).splitlines()
        chain = json.loads(lines_of_chain[0])["chain"]
        assert [line for line in copied if json.loads(line)["chain"] == chain] == lines_of_chain
    assert len(copied) == sum(len(f.read_bytes().splitlines()) for fs in chains for f in fs)
    from_logs = nfsguard("verify", "-", "--public-key", str(public), stdin=output)
    assert from_logs.returncode == 0, from_logs.stdout + from_logs.stderr
    logs_lines = from_logs.stdout.decode().splitlines()
    assert len(logs_lines) == len(written)
    assert all(("OK: " in line) for line in logs_lines)
    assert logs_lines[0].endswith(" non-audit line(s) skipped")

    # an auditor's question: which PVs did that rule pin, and who asked?
    table = nfsguard(
        "query", str(log.parent), "--rule", "incident-node003-hang", "--outcome", "mutated"
    )
    assert table.returncode == 0
    rows = table.stdout.decode().splitlines()[1:]
    assert len(rows) == sum(1 for o in outcome.values() if o == "mutated")
    assert all(" kubernetes-admin " in row for row in rows)


def _check_snapshot(snapshot: Path, records: list[dict[str, Any]], public: Path) -> None:
    """Signed, but (as a rule) no checkpoint written yet: intact, not yet proven."""
    checked = nfsguard("verify", str(snapshot), "--public-key", str(public))
    lenient = nfsguard("verify", str(snapshot), "--public-key", str(public), "--allow-unsigned")
    marks = [r["seq"] for r in records if r["type"] == "checkpoint"]
    if not marks:
        assert checked.returncode == 4, checked.stdout + checked.stderr
        assert checked.stdout.startswith(b"UNVERIFIED: no checkpoint at all: no record is signed")
        # a key given and nothing signed: never proven, --allow-unsigned or not (docs/audit.md)
        assert lenient.returncode == 4, lenient.stdout + lenient.stderr
    elif marks[-1] != records[-1]["seq"]:  # an interval checkpoint came first
        after = records[-1]["seq"] - marks[-1]
        assert checked.returncode == 4, checked.stdout + checked.stderr
        assert checked.stdout.startswith(
            f"UNVERIFIED: {after} record(s) after the last checkpoint (seq {marks[-1]}) not "
            "anchored by a signature (--require-checkpoint-within 0)".encode()
        )
        assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    else:  # ... just after the last decision
        assert (checked.returncode, lenient.returncode) == (0, 0), checked.stdout


def test_full_audit_disk_turns_reviews_into_503(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], check=True)
    server: ServerHandle | None = None
    try:
        log = disk / "audit.log"
        server = start_server(
            [POLICIES], tmp_path / "server", ["--workers", "2", "--audit-log", str(log)]
        )
        statuses: list[int] = []
        for i in range(300):
            review = admission_review(pv("192.168.100.7", "/data1/k8sdev/x", "4.2", name=f"p{i}"))
            r = post_review(server, review)
            statuses.append(r.status_code)
            if r.status_code != 200:
                assert r.status_code == 503
                assert "decision could not be recorded" in r.text
                assert "No space left on device (ENOSPC)" in r.text
                break
        assert statuses[-1] == 503 and statuses.count(200) == len(statuses) - 1
        # every 200 answer was recorded; each worker's chain holds no partial line and
        # verifies
        chains = audit_chains(log)
        assert chains
        lines = 0
        for files in chains:
            data = b"".join(f.read_bytes() for f in files)
            assert data.endswith(b"\n") or not data  # (empty: a worker that got no review)
            lines += data.count(b"\n")
        assert lines == statuses.count(200)
        checked = nfsguard("verify", str(disk), "--allow-unsigned")
        assert checked.returncode == 0, checked.stdout
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", "-l", str(disk)], check=True)
