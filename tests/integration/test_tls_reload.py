"""Certificates renewed under load: the real `nfsguard serve` (gunicorn, gthread, TLS) keeps
answering AdmissionReviews while its tls.crt/tls.key are replaced, and new connections
get the new certificate, without a restart and without one failed request.

(Over 400 lines: each renewal race needs its own server; they share the helpers here.)

Three ways the files change in real life:
- the kubelet's atomic swap of a Secret volume (``..data`` symlink renamed over);
- a writer that replaces tls.key, then tls.crt (a window with a mismatched pair);
- a CA rotation: clients trust old + new CA (caBundle injected first), then the server
  switches to a certificate from the new CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from webhook import pki
from webhook.server.tls_reload import TLSWatcher, watch_tls_files

REPO = Path(__file__).resolve().parents[2]
NFSGUARD = Path(sys.executable).parent / "nfsguard"
POLICY = REPO / "policies"
HOST = "127.0.0.1"
NAMES = ("localhost",)
IPS = ("127.0.0.1",)


def review_body() -> dict[str, object]:
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "PersistentVolume"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumes"},
            "name": "pv-nfs",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": {
                "kind": "PersistentVolume",
                "apiVersion": "v1",
                "metadata": {"name": "pv-nfs"},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "mountOptions": ["nfsvers=4.2", "hard"],
                    "volumeMode": "Filesystem",
                    "nfs": {"server": "192.168.100.7", "path": "/data1/k8sdev/hl"},
                },
                "status": {"phase": "Pending"},
            },
            "oldObject": None,
            "dryRun": False,
        },
    }


# ------------------------------------------------------------------ TLS files


class KubeletDir:
    """A directory laid out like a kubelet Secret volume: tls.crt -> ..data/tls.crt,
    ..data -> ..<timestamp>/; an update writes a new timestamp dir and renames a new
    ..data symlink over the old one (atomic for both files at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0

    def publish(self, pair: pki.KeyPair) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.n += 1
        ts = f"..2026_11_27_{self.n:04d}"
        d = self.path / ts
        d.mkdir()
        (d / "tls.crt").write_bytes(pair.cert_pem)
        (d / "tls.key").write_bytes(pair.key_pem)
        os.chmod(d / "tls.key", 0o600)
        tmp = self.path / "..data_tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ts)
        os.replace(tmp, self.path / "..data")
        for name in ("tls.crt", "tls.key"):
            link = self.path / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)


def write_pair_non_atomically(tls_dir: Path, pair: pki.KeyPair, gap: float) -> None:
    """tls.key first, tls.crt ``gap`` seconds later: a mismatched pair in between."""
    pki.write_atomic(tls_dir / "tls.key", pair.key_pem, mode=0o600)
    time.sleep(gap)
    pki.write_atomic(tls_dir / "tls.crt", pair.cert_pem)


def fingerprint(pem: bytes) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    return hashlib.sha256(der).hexdigest()


def served_fingerprint(port: int, trust: Path) -> str:
    """The certificate a fresh TLS connection is given (verified against ``trust``)."""
    ctx = ssl.create_default_context(cafile=str(trust))
    with (
        socket.create_connection((HOST, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


# ------------------------------------------------------------------ the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    tls_dir: Path
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self, trust: Path) -> Server:
        for _ in range(3):
            self.port = free_port()
            log = open(self.workdir / f"serve-{self.port}.log", "wb")  # noqa: SIM115
            argv = [
                str(NFSGUARD),
                "serve",
                "--policy",
                str(POLICY),
                "--tls-dir",
                str(self.tls_dir),
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--workers",
                "2",
                "--threads",
                "8",
                "--audit-log",
                str(self.workdir / "audit.log"),
            ]
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            log.close()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    r = requests.get(
                        f"https://{HOST}:{self.port}/readyz", verify=str(trust), timeout=2
                    )
                    if r.status_code == 200:
                        return self
                except requests.RequestException:
                    pass
                time.sleep(0.2)
            out = self.log_text()
            self.stop()
            if "in use" not in out.lower():
                raise RuntimeError(f"nfsguard serve did not become ready:\n{out[-3000:]}")
        raise RuntimeError("no free port")

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("serve-*.log"))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[Path, Path], Server]]:
    servers: list[Server] = []

    def start(tls_dir: Path, trust: Path) -> Server:
        s = Server(tls_dir, tmp_path)
        servers.append(s)
        return s.start(trust)

    yield start
    for s in servers:
        s.stop()


# ------------------------------------------------------------------ load


@dataclass
class Load:
    """Client threads posting reviews: half reuse one keep-alive connection (as
    kube-apiserver does), half open a new connection (a TLS handshake) per review."""

    port: int
    trust: Path
    threads: int = 8
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _one(self, session: requests.Session) -> None:
        body = review_body()
        uid = body["request"]["uid"]  # type: ignore[index]
        try:
            r = session.post(
                f"https://{HOST}:{self.port}/mutate",
                json=body,
                verify=str(self.trust),
                timeout=10,
            )
            resp = r.json()["response"] if r.status_code == 200 else None
            if resp is None or resp["uid"] != uid or not resp["allowed"]:
                raise AssertionError(f"HTTP {r.status_code}: {r.text[:200]}")
            patch = json.loads(base64.b64decode(resp["patch"]))
            if "nfsvers=4.0" not in json.dumps(patch):  # the shipped policy pins this export
                raise AssertionError(f"no pin in {patch}")
        except Exception as e:
            with self._lock:
                self.failures.append(f"{type(e).__name__}: {e}")
            return
        with self._lock:
            self.ok += 1

    def _run(self, keepalive: bool) -> None:
        session = requests.Session()
        session.trust_env = False
        while not self._stop.is_set():
            if keepalive:
                self._one(session)
            else:
                with requests.Session() as fresh:
                    fresh.trust_env = False
                    self._one(fresh)
        session.close()

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)


def wait_served(port: int, trust: Path, want: str, timeout: float = 10.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if served_fingerprint(port, trust) == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"new certificate not served within {timeout}s")


def settle(load: Load, at_least: int) -> None:
    """Let the load run until ``at_least`` more reviews succeeded."""
    start = load.ok
    deadline = time.monotonic() + 20
    while load.ok - start < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    assert load.ok - start >= at_least, f"load stalled: {load.failures[:5]}"


# ------------------------------------------------------------------ tests


def test_kubelet_secret_update_and_ca_rotation_under_load(
    tmp_path: Path, start_server: Callable[[Path, Path], Server]
) -> None:
    # A CA issued 3300 days ago (350 days left) and a serving certificate issued 310 days
    # ago (55 days left): both are due under the default policy, the serving one first.
    now = dt.datetime.now(dt.UTC)
    ca0 = pki.generate_ca("nfsguard-webhook-ca", now=now - dt.timedelta(days=3300))
    serving0 = pki.issue_serving_cert(
        ca0, dns_names=NAMES, ip_addresses=IPS, now=now - dt.timedelta(days=310)
    )
    bundle = pki.CertBundle(ca=ca0, serving=serving0, ca_bundle=ca0.cert_pem)
    tls = KubeletDir(tmp_path / "tls")
    tls.publish(bundle.serving)
    trust = tmp_path / "ca-bundle.crt"
    trust.write_bytes(bundle.ca_bundle)

    server = start_server(tls.path, trust)
    master = server.proc
    assert master is not None
    assert served_fingerprint(server.port, trust) == fingerprint(bundle.serving.cert_pem)

    with Load(server.port, trust) as load:
        settle(load, 50)

        # 1. serving certificate renewed (same CA), published like the kubelet does
        not_yet_ca = pki.RenewalPolicy(ca_renew_before=dt.timedelta(days=300))
        renewed = pki.plan(bundle, dns_names=NAMES, ip_addresses=IPS, policy=not_yet_ca)
        assert renewed.ca == bundle.ca and renewed.serving != bundle.serving
        tls.publish(renewed.serving)
        wait_served(server.port, trust, fingerprint(renewed.serving.cert_pem))
        settle(load, 50)

        # 2. CA rotation: the trust bundle first (old + new CA), then the new certificate
        rotated = pki.plan(renewed, dns_names=NAMES, ip_addresses=IPS)
        assert rotated.ca != renewed.ca
        assert len(pki.load_pem_certificates(rotated.ca_bundle)) == 2
        pki.write_atomic(trust, rotated.ca_bundle)
        settle(load, 30)
        tls.publish(rotated.serving)
        wait_served(server.port, trust, fingerprint(rotated.serving.cert_pem))
        settle(load, 50)

    assert load.failures == [], load.failures[:10]
    assert load.ok >= 180  # what settle() waited for
    # no restart: the same master served throughout
    assert master.poll() is None
    # a client trusting only the new CA accepts what is served now
    new_only = tmp_path / "new-ca.crt"
    new_only.write_bytes(rotated.ca.cert_pem)
    assert served_fingerprint(server.port, new_only) == fingerprint(rotated.serving.cert_pem)


def test_half_written_pair_never_breaks_a_handshake(
    tmp_path: Path, start_server: Callable[[Path, Path], Server]
) -> None:
    tls_dir = tmp_path / "tls"
    pki.ensure_dev_tls(tls_dir)  # what `nfsguard serve` does in development
    ca = pki.KeyPair((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    trust = tls_dir / "ca.crt"
    server = start_server(tls_dir, trust)
    old = fingerprint((tls_dir / "tls.crt").read_bytes())
    new = pki.issue_serving_cert(ca, dns_names=NAMES, ip_addresses=IPS)

    with Load(server.port, trust) as load:
        settle(load, 50)
        done = threading.Event()

        def write() -> None:
            write_pair_non_atomically(tls_dir, new, gap=1.5)
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        # during the gap the old pair keeps being served (the new key has no certificate)
        seen_during_gap: set[str] = set()
        while not done.is_set():
            seen_during_gap.add(served_fingerprint(server.port, trust))
            time.sleep(0.05)
        writer.join()
        wait_served(server.port, trust, fingerprint(new.cert_pem))
        settle(load, 50)

    assert seen_during_gap and seen_during_gap <= {old, fingerprint(new.cert_pem)}
    assert old in seen_during_gap
    assert load.failures == [], load.failures[:10]
    # the server saw the mismatched pair and kept serving the previous one
    assert "keeping the pair in service" in server.log_text()


def test_a_worker_first_reached_while_the_pair_is_half_written_serves_the_loaded_pair(
    tmp_path: Path, start_server: Callable[[Path, Path], Server]
) -> None:
    """Each worker holds the pair the server loaded at start (the gunicorn master loads
    it before forking), so a worker whose first connection comes while the files are
    mid-update serves that pair, rather than finding nothing to keep and failing the
    handshake. Here no review reaches the workers before the update starts: only the
    readiness probe, which reaches at most one of the two."""
    tls_dir = tmp_path / "tls"
    pki.ensure_dev_tls(tls_dir)
    ca = pki.KeyPair((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    trust = tls_dir / "ca.crt"
    server = start_server(tls_dir, trust)
    old = fingerprint((tls_dir / "tls.crt").read_bytes())
    new = pki.issue_serving_cert(ca, dns_names=NAMES, ip_addresses=IPS)
    pki.write_atomic(tls_dir / "tls.key", new.key_pem, mode=0o600)  # the cert is not there yet
    seen = [served_fingerprint(server.port, trust) for _ in range(40)]  # fresh handshakes
    assert set(seen) == {old}
    pki.write_atomic(tls_dir / "tls.crt", new.cert_pem)
    wait_served(server.port, trust, fingerprint(new.cert_pem))


def test_serve_refuses_a_pair_that_does_not_load_in_one_line(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    pki.ensure_dev_tls(tls_dir)
    other = pki.plan(None, dns_names=NAMES, ip_addresses=IPS)
    pki.write_atomic(tls_dir / "tls.key", other.serving.key_pem, mode=0o600)  # not its key
    argv = [str(NFSGUARD), "serve", "--policy", str(POLICY), "--tls-dir", str(tls_dir)]
    argv += ["--host", HOST, "--port", str(free_port())]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if "tls.crt and tls.key" in line]
    assert len(lines) == 1 and "do not load as a TLS pair" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def rejected_tls_reloads(port: int, trust: Path) -> float:
    text = requests.get(f"https://{HOST}:{port}/metrics", verify=str(trust), timeout=10).text
    for line in text.splitlines():
        if line.startswith('nfsguard_tls_reload_total{result="rejected"}'):
            return float(line.split()[-1])
    return 0.0


def test_reload_refuses_a_pair_that_is_not_valid_now(
    tmp_path: Path, start_server: Callable[[Path, Path], Server]
) -> None:
    """Issue 17: an expired or not-yet-valid pair was loaded over a valid one ("loaded
    renewed tls files"), after which every client failed verification. Each bad pair
    here is refused: the pair in service stays, the refusal is logged once per worker
    and counted; a good pair afterwards is served."""
    tls_dir = tmp_path / "tls"
    pki.ensure_dev_tls(tls_dir)
    ca = pki.KeyPair((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    trust = tls_dir / "ca.crt"
    server = start_server(tls_dir, trust)
    old = fingerprint((tls_dir / "tls.crt").read_bytes())
    now = dt.datetime.now(dt.UTC)
    expired = pki.issue_serving_cert(
        ca, dns_names=NAMES, ip_addresses=IPS, now=now - dt.timedelta(days=60), valid_days=30
    )
    early = pki.issue_serving_cert(
        ca, dns_names=NAMES, ip_addresses=IPS, now=now + dt.timedelta(days=2)
    )
    wrong_names = pki.issue_serving_cert(ca, dns_names=("elsewhere.example",))
    other_key = pki.issue_serving_cert(ca, dns_names=NAMES, ip_addresses=IPS)
    mismatched = pki.KeyPair(other_key.cert_pem, pki.plan(None, dns_names=NAMES).serving.key_pem)
    bad = {
        "expired": expired,
        "not valid before": early,
        "not valid for 127.0.0.1, localhost": wrong_names,
        "key values mismatch": mismatched,
    }
    for reason, pair in bad.items():
        pki.write_atomic(tls_dir / "tls.key", pair.key_pem, mode=0o600)
        pki.write_atomic(tls_dir / "tls.crt", pair.cert_pem)
        seen = {served_fingerprint(server.port, trust) for _ in range(20)}
        assert seen == {old}, reason
        refusals = [
            line
            for line in server.log_text().splitlines()
            if "refused, keeping the pair in service" in line and reason in line
        ]
        assert 1 <= len(refusals) <= 2, (reason, refusals)  # once per worker that saw it
    assert rejected_tls_reloads(server.port, trust) >= len(bad)
    assert "loaded renewed tls files" not in server.log_text()
    good = pki.issue_serving_cert(ca, dns_names=NAMES, ip_addresses=IPS)
    pki.write_atomic(tls_dir / "tls.key", good.key_pem, mode=0o600)
    pki.write_atomic(tls_dir / "tls.crt", good.cert_pem)
    wait_served(server.port, trust, fingerprint(good.cert_pem))


def test_serve_refuses_an_expired_pair_unless_told_otherwise(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    pki.ensure_dev_tls(tls_dir)
    ca = pki.KeyPair((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    now = dt.datetime.now(dt.UTC)
    expired = pki.issue_serving_cert(
        ca, dns_names=NAMES, ip_addresses=IPS, now=now - dt.timedelta(days=60), valid_days=30
    )
    pki.write_atomic(tls_dir / "tls.key", expired.key_pem, mode=0o600)
    pki.write_atomic(tls_dir / "tls.crt", expired.cert_pem)
    port = free_port()
    argv = [str(NFSGUARD), "serve", "--policy", str(POLICY), "--tls-dir", str(tls_dir)]
    argv += ["--host", HOST, "--port", str(port), "--workers", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if "tls.crt" in line]
    assert len(lines) == 1 and "expired at" in lines[0], result.stderr
    assert "--allow-invalid-certificate" in lines[0] and "Traceback" not in result.stderr
    # told otherwise: it serves (a client that checks dates refuses it, as it should)
    log = tmp_path / "allowed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--allow-invalid-certificate"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        answered = False
        unchecked = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        unchecked.check_hostname = False
        unchecked.verify_mode = ssl.CERT_NONE
        while not answered and time.monotonic() < deadline and proc.poll() is None:
            try:
                with (
                    socket.create_connection((HOST, port), timeout=5) as raw,
                    unchecked.wrap_socket(raw) as conn,
                ):
                    conn.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answered = conn.recv(4096).startswith(b"HTTP/1.1 200")
            except OSError:
                time.sleep(0.2)
        assert answered, log.read_text(errors="replace")[-3000:]
        assert "not valid now (--allow-invalid-certificate)" in log.read_text(errors="replace")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


# ------------------------------------------------------------------ the watcher (SIGHUP path)


def test_watcher_reports_each_complete_change_once(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    pki.ensure_dev_tls(tls_dir)
    ca = pki.KeyPair((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    calls: list[str] = []
    watcher = watch_tls_files(
        tls_dir, lambda: calls.append((tls_dir / "tls.crt").read_text()), interval=0.05
    )
    try:
        time.sleep(0.3)
        assert calls == []  # the state at start is the baseline
        new = pki.issue_serving_cert(ca, dns_names=NAMES)
        write_pair_non_atomically(tls_dir, new, gap=0.5)  # half a pair is not reported
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert calls == [new.cert_pem.decode()]
        # a broken file is never reported; the valid pair after it is
        (tls_dir / "tls.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
        time.sleep(0.3)
        assert len(calls) == 1
        newer = pki.issue_serving_cert(ca, dns_names=NAMES)
        write_pair_non_atomically(tls_dir, newer, gap=0)
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls == [new.cert_pem.decode(), newer.cert_pem.decode()]
    finally:
        assert isinstance(watcher, TLSWatcher)
        watcher.stop(5)
    assert not watcher.is_alive()


def test_watcher_survives_a_failing_callback(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    pki.ensure_dev_tls(tls_dir)
    ca = pki.KeyPair((tls_dir / "ca.crt").read_bytes(), (tls_dir / "ca.key").read_bytes())
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        raise RuntimeError("reload failed")

    watcher = watch_tls_files(tls_dir, boom, interval=0.05)
    try:
        for _ in range(2):
            write_pair_non_atomically(tls_dir, pki.issue_serving_cert(ca, dns_names=NAMES), gap=0)
            n = len(calls)
            deadline = time.monotonic() + 5
            while len(calls) == n and time.monotonic() < deadline:
                time.sleep(0.05)
        assert len(calls) == 2 and watcher.is_alive()
    finally:
        assert isinstance(watcher, TLSWatcher)
        watcher.stop(5)


GUNICORN_CONF = """
from pathlib import Path
from webhook.server.tls_reload import sighup, watch_tls_files

bind = "{host}:{port}"
workers = 2
worker_class = "gthread"
threads = 4
graceful_timeout = 10
certfile = "{tls}/tls.crt"
keyfile = "{tls}/tls.key"
errorlog = "-"

def when_ready(server):
    watch_tls_files(Path("{tls}"), sighup(), interval=0.2)

# A server that builds its SSLContext once per worker, the case sighup() is for.
# (gunicorn's default instead loads tls.crt and tls.key again for every connection,
# two reads that can straddle a swap of the pair: a mismatched pair, an SSL error,
# and a plaintext error page on a TLS connection. That race is why nfsguard serves
# through gunicorn_ssl_context, and it is not what this test is about.)
_context = None

def ssl_context(conf, default_ssl_context_factory):
    global _context
    if _context is None:
        _context = default_ssl_context_factory()
    return _context
"""

PID_APP = """
import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def test_sighup_watcher_restarts_plain_gunicorn_workers_without_failures(
    tmp_path: Path,
) -> None:
    """The alternative for servers that build their SSLContext once: the watcher in the
    gunicorn master sends it SIGHUP; new workers load the new pair, old ones finish.
    (The master re-reads this configuration on SIGHUP, so new workers start with no
    context and build theirs from the new files.)"""
    tls = KubeletDir(tmp_path / "tls")
    bundle = pki.plan(None, dns_names=NAMES, ip_addresses=IPS)
    tls.publish(bundle.serving)
    trust = tmp_path / "ca.crt"
    trust.write_bytes(bundle.ca_bundle)
    (tmp_path / "pid_app.py").write_text(PID_APP)
    port = free_port()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF.format(host=HOST, port=port, tls=tls.path))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{REPO}"
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(conf), "pid_app:app"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    log.close()
    failures: list[str] = []
    pids_before: set[str] = set()
    pids_after: set[str] = set()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                served_fingerprint(port, trust)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "gunicorn.log"
                ).read_text()
                time.sleep(0.1)
        stop = threading.Event()
        seen: list[str] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    with requests.Session() as s:  # a new connection (handshake) each time
                        s.trust_env = False
                        r = s.get(f"https://{HOST}:{port}/", verify=str(trust), timeout=10)
                    r.raise_for_status()
                    seen.append(r.text)
                except Exception as e:
                    failures.append(f"{type(e).__name__}: {e}")

        clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for t in clients:
            t.start()
        time.sleep(1.0)
        pids_before = set(seen)
        renewed = pki.issue_serving_cert(bundle.ca, dns_names=NAMES, ip_addresses=IPS)
        tls.publish(renewed)
        wait_served(port, trust, fingerprint(renewed.cert_pem))
        log_file = tmp_path / "gunicorn.log"
        deadline = time.monotonic() + 15
        while "Hang up" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        # the old workers finish gracefully; then only new ones answer
        while time.monotonic() < deadline:
            mark = len(seen)
            time.sleep(1.0)
            pids_after = set(seen[mark:])
            if pids_after and not pids_after & pids_before:
                break
        stop.set()
        for t in clients:
            t.join(30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    assert failures == [], failures[:10]
    assert pids_before and pids_after
    assert not pids_before & pids_after, "workers were not replaced after SIGHUP"
    assert "Hang up" in (tmp_path / "gunicorn.log").read_text()
