"""Policy hot reload in a real `nfsguard serve` (gunicorn, 2 gthread workers, TLS).

(Over 400 lines: every reload path shares one ConfigMap-shaped directory fixture.)

The policy directory is laid out as the kubelet lays out a ConfigMap volume
(``..2026_..`` data directories, an ``..data`` symlink swapped atomically, and
``file.yaml -> ..data/file.yaml`` links), and every change is made the kubelet's
way. Reviews are sent as kube-apiserver sends them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import (
    APISERVER_HEADERS,
    ServerHandle,
    admission_review,
    start_server,
)
from tests.support import policy_store
from webhook.config.documents import PolicyError

WAIT = 60.0  # a generous deadline for things that happen within a few seconds
WORKERS = 2


def policy(version: str, action: str = "pin", server: str = "192.0.2.10") -> str:
    return f"""\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: reload-test
spec:
  version: "{version}"
  rules:
  - name: filer
    description: 4.1/4.2 mounts hang against this filer
    match:
      exports:
      - server: {server}
        path: /exports/**
    action: {action}
"""


BROKEN = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: reload-test
spec:
  version: "broken"
  rules:
  - name: filer
    match:
      exprots:
      - server: 192.0.2.10
    action: pin
  - name: bad-cidr
    match:
      exports:
      - server: 10.0.0.1/16
    action: pin
"""


class ConfigMapDir:
    """A directory written the way the kubelet's AtomicWriter writes a ConfigMap volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir(parents=True, exist_ok=True)

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        data = self.root / f"..2026_11_27_08_00_{self.generation:02d}.{uuid.uuid4().hex[:8]}"
        data.mkdir()
        for name, text in files.items():
            (data / name).write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.root / "..data")  # the atomic swap
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")


class Server:
    """The shared integration server (tests/integration/conftest.py ``start_server``)
    with 2 workers and a fast reload interval, plus helpers that reach every worker."""

    def __init__(self, workdir: Path, policies: Path) -> None:
        self.workdir = workdir
        self.policies = policies
        self.handle: ServerHandle | None = None

    @property
    def ca(self) -> str:
        assert self.handle is not None
        return str(self.handle.ca_crt)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.handle.process if self.handle is not None else None

    def url(self, path: str) -> str:
        assert self.handle is not None
        return self.handle.url(path)

    def session(self) -> requests.Session:
        """A new connection (so any worker may answer), TLS verified, no proxies."""
        session = requests.Session()
        session.verify = self.ca
        session.trust_env = False
        return session

    def start(self) -> Server:
        args = ["--workers", str(WORKERS), "--threads", "4", "--reload-interval", "0.2"]
        self.handle = start_server([self.policies], self.workdir, args)
        return self

    def log(self) -> str:
        return self.handle.log_text() if self.handle is not None else ""

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()

    def readyz(self) -> dict[str, Any]:
        # A fresh connection each time, so either worker may answer.
        with self.session() as fresh:
            r = fresh.get(self.url("/readyz"), timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def review(self, session: requests.Session | None = None) -> requests.Response:
        if session is None:
            with self.session() as fresh:
                return self.review(fresh)
        return session.post(
            self.url("/mutate?timeout=10s"),
            data=json.dumps(review_body()),
            headers=APISERVER_HEADERS,
            verify=self.ca,
            timeout=10,
        )

    def wait_all_workers(self, predicate: Any, what: str, rounds: int = 8) -> dict[str, Any]:
        """Until ``rounds`` /readyz answers in a row satisfy ``predicate``, answered by
        every worker (fresh connections; /readyz says which worker answered)."""
        deadline = time.monotonic() + WAIT
        streak: list[int] = []
        body: dict[str, Any] = {}
        while len(streak) < rounds or len(set(streak)) < WORKERS:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: last /readyz {body}\n{self.log()[-3000:]}")
            body = self.readyz()
            if predicate(body):
                streak.append(body["reload"]["worker"])
            else:
                streak = []
                time.sleep(0.05)
        return body


PV = {
    "kind": "PersistentVolume",
    "apiVersion": "v1",
    "metadata": {"name": "pv-filer"},
    "spec": {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteMany"],
        "mountOptions": ["nfsvers=4.2", "hard"],
        "nfs": {"server": "192.0.2.10", "path": "/exports/a"},
    },
}


def review_body() -> dict[str, Any]:
    return admission_review(PV)


def answer(r: requests.Response) -> tuple[bool, str]:
    """(allowed, policy version in force) of one review response."""
    assert r.status_code == 200, r.text
    response = r.json()["response"]
    return bool(response["allowed"]), response["auditAnnotations"]["policy-version"]


def versions(body: dict[str, Any]) -> list[str]:
    return [p["version"] for p in body["policies"]]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, ConfigMapDir]]:
    cm = ConfigMapDir(tmp_path / "policies")
    cm.publish({"site.yaml": policy("v1", "pin")})
    server = Server(tmp_path, cm.root)
    try:
        server.start()
        # every worker has loaded v1 before a test changes anything
        server.wait_all_workers(lambda b: versions(b) == ["v1"], "a worker never started")
        yield server, cm
    finally:
        server.stop()


def reload_total(server: Server, result: str) -> float:
    with server.session() as fresh:
        text = fresh.get(server.url("/metrics"), timeout=10).text
    found = re.search(
        rf'^nfsguard_policy_reload_total\{{result="{result}"\}} ([0-9.e+]+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_good_change_is_picked_up_by_every_worker(
    served: tuple[Server, ConfigMapDir],
) -> None:
    server, cm = served
    first = server.readyz()
    assert versions(first) == ["v1"]
    assert first["reload"]["result"] == "initial"
    assert answer(server.review()) == (True, "v1")

    cm.publish({"site.yaml": policy("v2", "deny")})
    body = server.wait_all_workers(
        lambda b: versions(b) == ["v2"] and b["reload"]["result"] == "accepted",
        "v2 never reached every worker",
    )
    assert body["reload"]["generation"] == 1
    assert body["reload"]["problems"] == []
    assert body["reload"]["time"] >= first["reload"]["time"]
    assert body["policies"][0]["digest"] != first["policies"][0]["digest"]
    for _ in range(10):  # fresh connections: whichever worker answers denies now
        assert answer(server.review()) == (False, "v2")
    assert reload_total(server, "accepted") >= 2  # each worker swapped once


def test_bad_change_is_rejected_and_last_good_policy_served(
    served: tuple[Server, ConfigMapDir],
) -> None:
    server, cm = served
    cm.publish({"site.yaml": policy("v2", "deny")})
    server.wait_all_workers(lambda b: versions(b) == ["v2"], "v2 never arrived")

    cm.publish({"site.yaml": BROKEN})
    body = server.wait_all_workers(
        lambda b: b["reload"]["result"] == "rejected", "the broken policy was not rejected"
    )
    assert versions(body) == ["v2"]  # the last good version stays in force
    problems = body["reload"]["problems"]
    assert any(
        re.fullmatch(r".*/site\.yaml:10:7: rule \"filer\": unknown key 'exprots' .*", p)
        for p in problems
    ), problems
    assert any(
        re.fullmatch(r".*/site\.yaml:16:9: rule \"bad-cidr\": invalid CIDR '10\.0\.0\.1/16'.*", p)
        for p in problems
    ), problems
    for _ in range(10):
        assert answer(server.review()) == (False, "v2")
    assert reload_total(server, "rejected") >= 2  # both workers rejected it
    log = server.log()
    assert re.search(r"policy reload rejected: .*site\.yaml:10:7: .*'exprots'", log), log[-3000:]
    assert re.search(r"policy reload rejected: .*site\.yaml:16:9: .*10\.0\.0\.1/16", log)

    # fixing the file is picked up again
    cm.publish({"site.yaml": policy("v3", "pin")})
    server.wait_all_workers(
        lambda b: versions(b) == ["v3"] and b["reload"]["result"] == "accepted",
        "the fixed policy never arrived",
    )
    assert answer(server.review()) == (True, "v3")


def test_no_review_fails_during_several_swaps(served: tuple[Server, ConfigMapDir]) -> None:
    server, cm = served
    stop = threading.Event()
    statuses: list[int] = []
    seen: list[tuple[bool, str]] = []
    errors: list[str] = []

    def client(keep_alive: bool) -> None:
        session = server.session() if keep_alive else None
        while not stop.is_set():
            try:
                r = server.review(session)
            except requests.RequestException as exc:
                errors.append(repr(exc))
                continue
            statuses.append(r.status_code)
            if r.status_code == 200:
                seen.append(answer(r))

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(2, 8):  # six swaps, alternating pin and deny
            action = "deny" if n % 2 == 0 else "pin"
            cm.publish({"site.yaml": policy(f"v{n}", action)})
            server.wait_all_workers(
                lambda b, v=f"v{n}": versions(b) == [v], f"v{n} never arrived", rounds=4
            )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    # every answer is one complete policy version: v-even denies, v-odd (and v1) pins
    for allowed, version in seen:
        assert allowed == (int(version[1:]) % 2 == 1), (allowed, version)
    assert {v for _, v in seen} >= {"v2", "v7"}


def test_store_fingerprint_follows_symlink_swaps(tmp_path: Path) -> None:
    """PolicyStore.check, without a server: a ConfigMap swap with the same content is
    no change; a swap with new content is; a vanished file is rejected once."""
    cm = ConfigMapDir(tmp_path / "p")
    cm.publish({"a.yaml": policy("v1")})
    store = policy_store([str(cm.root)])
    engine = store.engine()
    assert store.check() == "unchanged"
    cm.publish({"a.yaml": policy("v1")})  # kubelet resync: new data dir, same content
    assert store.check() == "unchanged"
    assert store.engine() is engine
    cm.publish({"a.yaml": policy("v2")})
    assert store.check() == "accepted"
    assert [p.version for p in store.engine().policies] == ["v2"]
    assert store.reload_status()["generation"] == 1
    cm.publish({"a.yaml": BROKEN})
    assert store.check() == "rejected"
    assert store.check() == "unchanged"  # reported once, not on every poll
    assert [p.version for p in store.engine().policies] == ["v2"]
    (cm.root / "a.yaml").unlink()
    assert store.check() == "rejected"
    assert store.reload_status()["problems"] == [f"{cm.root}: no policy files (*.yaml, *.yml)"]
    assert [p.version for p in store.engine().policies] == ["v2"]


def test_a_worker_restarted_while_the_files_are_broken_serves_the_start_policy(
    served: tuple[Server, ConfigMapDir],
) -> None:
    """gunicorn replaces a dead worker; the new one cannot load the broken files and
    serves the policy the server started with, instead of failing to boot."""
    server, cm = served
    cm.publish({"site.yaml": BROKEN})
    body = server.wait_all_workers(
        lambda b: b["reload"]["result"] == "rejected", "the broken policy was not rejected"
    )
    fresh = _kill_and_replace(server, body["reload"]["worker"])
    assert versions(fresh) == ["v1"]
    assert fresh["reload"]["result"] == "rejected"
    assert any("unknown key 'exprots'" in p for p in fresh["reload"]["problems"])
    for _ in range(10):
        assert answer(server.review()) == (True, "v1")
    assert server.proc is not None and server.proc.poll() is None
    assert "this worker serves the last accepted set (generation 0): reload-test v1" in (
        server.log()
    )


def _kill_and_replace(server: Server, victim: int) -> dict[str, Any]:
    """SIGKILL one worker; the /readyz of the worker gunicorn starts in its place."""
    before = {server.readyz()["reload"]["worker"] for _ in range(20)}
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while True:
        assert time.monotonic() < deadline, server.log()[-3000:]
        try:
            fresh = server.readyz()
        except (requests.RequestException, AssertionError):
            continue
        if fresh["reload"]["worker"] not in before | {victim}:
            return fresh
        time.sleep(0.05)


def test_workers_killed_between_reloads_serve_one_generation(
    served: tuple[Server, ConfigMapDir],
) -> None:
    """Issue 17: after a good reload and then a broken file, a worker restarted by
    gunicorn served the master's start-time policy (15 of 30 identical reviews denied,
    15 pinned). Now it starts from the last accepted set: the same generation and the
    same answer from every worker, through kills between reloads."""
    server, cm = served
    for generation, (version, action, allowed) in enumerate(
        [("v2", "deny", False), ("v3", "pin", True)], start=1
    ):
        cm.publish({"site.yaml": policy(version, action)})
        server.wait_all_workers(
            lambda b, v=version: versions(b) == [v], f"{version} was not accepted everywhere"
        )
        cm.publish({"site.yaml": BROKEN})
        body = server.wait_all_workers(
            lambda b: b["reload"]["result"] == "rejected", "the broken policy was not rejected"
        )
        fresh = _kill_and_replace(server, body["reload"]["worker"])
        assert (versions(fresh), fresh["reload"]["generation"]) == ([version], generation)
        assert fresh["reload"]["result"] == "rejected"  # the broken files, as its siblings say
        seen = server.wait_all_workers(lambda b: True, "workers", rounds=20)
        assert seen["reload"]["generation"] == generation
        generations = {
            (tuple(versions(b)), b["reload"]["generation"])
            for b in (server.readyz() for _ in range(20))
        }
        assert generations == {((version,), generation)}  # one generation in /readyz
        answers = {answer(server.review()) for _ in range(30)}
        assert answers == {(allowed, version)}, answers  # identical reviews, one answer
    assert server.proc is not None and server.proc.poll() is None


def test_store_falls_back_only_when_given_a_fallback(tmp_path: Path) -> None:
    cm = ConfigMapDir(tmp_path / "p")
    cm.publish({"a.yaml": BROKEN})
    with pytest.raises(PolicyError):
        policy_store([str(cm.root)])
    store = policy_store([str(cm.root)], fallback=[("start.yaml", policy("v0"))])
    assert [p.version for p in store.engine().policies] == ["v0"]
    assert store.reload_status()["result"] == "rejected"
    assert store.check() == "unchanged"  # the same broken files: reported once
    cm.publish({"a.yaml": policy("v5")})
    assert store.check() == "accepted"
    assert [p.version for p in store.engine().policies] == ["v5"]
