"""The real server for integration tests: ``nfsguard serve`` (gunicorn, TLS) as a subprocess.

Reusable pieces:

* ``start_server(policy_paths, tmp_path, extra_args=()) -> ServerHandle``: runs
  ``.venv/bin/nfsguard serve --policy ... --tls-dir TMP/tls --host 127.0.0.1 --port FREE
  --audit-log TMP/audit.log`` in its own process group, waits until ``/readyz`` answers
  200 over TLS verified against the ca.crt the server generated, and returns a handle.
  ``handle.stop()`` ends the whole process group (SIGTERM, then SIGKILL).
* fixtures: ``nfsguard_server`` (one server per test module on tests/fixtures/policies)
  and ``server_factory`` (start servers with other policies or flags; all stopped at
  teardown).
* ``post_review(handle, review, *, raw=None, headers=None)``: POST exactly as
  kube-apiserver does (``/mutate?timeout=10s``, its four headers, HTTP/1.1 keep-alive on
  the handle's ``requests.Session``, TLS verified against ca.crt).
* ``admission_review(obj, ...)``: an AdmissionReview v1 request as the apiserver builds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from webhook.api.kube import POD_KIND_RESOURCES
from webhook.audit.chain_file import slot_chains

REPO = Path(__file__).resolve().parents[2]
NFSGUARD = REPO / ".venv" / "bin" / "nfsguard"
FIXTURES = REPO / "tests" / "fixtures"
POLICIES = FIXTURES / "policies"
LOOPBACK = "127.0.0.1"

#: What kube-apiserver sends with every AdmissionReview (admission-contract.md).
APISERVER_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, */*",
    "Accept-Encoding": "gzip",
    "User-Agent": "kube-apiserver-admission",
}
MUTATE_PATH = "/mutate?timeout=10s"


@dataclass
class ServerHandle:
    """A running ``nfsguard serve``."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    policy_paths: tuple[str, ...]
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    @property
    def ca_crt(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def audit_log(self) -> Path:
        """The configured log (slot 0); each worker writes a chain of its own beside it."""
        return self.workdir / "audit" / "audit.log"

    def audit_chains(self) -> list[list[Path]]:
        return audit_chains(self.audit_log)

    def audit_records(self) -> list[dict[str, Any]]:
        return audit_records(self.audit_log)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"nfsguard-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET over the handle's keep-alive session, TLS verified against ca.crt."""
        return self.session.get(self.url(path), timeout=kwargs.pop("timeout", 15), **kwargs)

    def stop(self) -> None:
        """End the server's whole process group (master and workers)."""
        self.session.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def audit_chains(log: Path) -> list[list[Path]]:
    """The files of each worker's chain of ``log`` (slot 0 first, rotated files first)."""
    return [[Path(name) for name in files] for _live, files in slot_chains(str(log))]


def audit_records(log: Path) -> list[dict[str, Any]]:
    """Every record of every chain of ``log`` (chain by chain, in chain order)."""
    return [
        json.loads(line)
        for files in audit_chains(log)
        for name in files
        for line in name.read_bytes().splitlines()
        if line
    ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def apiserver_session(ca_crt: Path) -> requests.Session:
    """A keep-alive session sending kube-apiserver's headers, TLS verified against ca.crt
    (never a CA bundle from the environment)."""
    session = requests.Session()
    session.headers.clear()
    session.headers.update(APISERVER_HEADERS)
    session.verify = str(ca_crt)
    session.trust_env = False  # no proxies from the environment: loopback only
    return session


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_server(
    policy_paths: Sequence[Path | str],
    tmp_path: Path,
    extra_args: Sequence[str] = (),
    *,
    ready_timeout: float = 60.0,
) -> ServerHandle:
    """Start ``nfsguard serve`` on a free loopback port and wait until it is ready.

    ``tmp_path`` holds tls/ (the dev CA and serving certificate the server creates),
    audit.log and the server's log. A port taken between choosing and binding it is
    retried on another port.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    policies = tuple(str(p) for p in policy_paths)
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        argv = [str(NFSGUARD), "serve"]
        for p in policies:
            argv += ["--policy", p]
        argv += [
            "--tls-dir",
            str(tmp_path / "tls"),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--audit-log",
            str(tmp_path / "audit" / "audit.log"),
            *extra_args,
        ]
        log = (tmp_path / f"nfsguard-{port}.log").open("wb")
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=_server_env(),
                start_new_session=True,  # its own process group: stop() ends workers too
            )
        finally:
            log.close()
        handle = ServerHandle(process, port, tmp_path, policies)
        try:
            _wait_ready(handle, ready_timeout)
        except BaseException:
            handle.stop()
            last_error = handle.log_text()
            if "in use" in last_error.lower():
                continue
            raise
        return handle
    raise RuntimeError(f"nfsguard serve could not bind a port:\n{last_error[-2000:]}")


def _wait_ready(handle: ServerHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not handle.ca_crt.exists():  # the server writes its dev CA before gunicorn starts
        _check_alive(handle, deadline)
        time.sleep(0.1)
    handle.session = apiserver_session(handle.ca_crt)
    while True:
        _check_alive(handle, deadline)
        try:
            response = handle.get("/readyz", timeout=2)
            if response.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)


def _check_alive(handle: ServerHandle, deadline: float) -> None:
    if not handle.alive():
        raise RuntimeError(
            f"nfsguard serve exited with {handle.process.returncode}:\n{handle.log_text()[-3000:]}"
        )
    if time.monotonic() > deadline:
        raise TimeoutError(f"nfsguard serve not ready:\n{handle.log_text()[-3000:]}")


def post_review(
    handle: ServerHandle,
    review: Mapping[str, Any] | None,
    *,
    raw: bytes | None = None,
    headers: Mapping[str, str | None] | None = None,
    path: str = MUTATE_PATH,
    timeout: float = 30.0,
) -> requests.Response:
    """POST an AdmissionReview the way kube-apiserver does.

    ``raw`` sends those bytes instead of ``review`` as JSON. ``headers`` override the
    apiserver's headers; a value of None removes that header.
    """
    body = raw if raw is not None else json.dumps(review).encode()
    sent = dict(APISERVER_HEADERS)
    for key, value in (headers or {}).items():
        sent.pop(key, None)
        if value is not None:
            sent[key] = value
    request = requests.Request("POST", handle.url(path), data=body, headers=sent)
    prepared = handle.session.prepare_request(request)
    # prepare_request merges the session's headers back in: apply removals again
    for key, value in (headers or {}).items():
        if value is None and key in prepared.headers:
            del prepared.headers[key]
    return handle.session.send(prepared, timeout=timeout, verify=str(handle.ca_crt))


def admission_review(
    obj: Mapping[str, Any] | None,
    *,
    operation: str = "CREATE",
    uid: str | None = None,
    old: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    kind: str | None = None,
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 request for ``obj``, shaped as kube-apiserver sends it."""
    kind = kind or (str(obj.get("kind")) if obj is not None else "PersistentVolume")
    resource = {
        "PersistentVolume": ("", "v1", "persistentvolumes"),
        "StorageClass": ("storage.k8s.io", "v1", "storageclasses"),
        "Pod": ("", "v1", "pods"),
        "ConfigMap": ("", "v1", "configmaps"),
        **{k: (g, "v1", r) for k, (g, r) in POD_KIND_RESOURCES.items()},
    }.get(kind, ("example.com", "v1", kind.lower() + "s"))
    group, version, plural = resource
    name = ""
    if obj is not None:
        name = str((obj.get("metadata") or {}).get("name") or "")
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": plural},
        "name": name,
        "operation": operation,
        "userInfo": {
            "username": "kubernetes-admin",
            "groups": ["system:masters", "system:authenticated"],
        },
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {
            "kind": {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}.get(
                operation, "DeleteOptions"
            ),
            "apiVersion": "meta.k8s.io/v1",
        },
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}


@pytest.fixture(scope="module")
def nfsguard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One server per test module, serving tests/fixtures/policies."""
    handle = start_server([POLICIES], tmp_path_factory.mktemp("nfsguard"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerHandle]]:
    """``server_factory(policy_paths, extra_args=())`` starts a server stopped at teardown."""
    started: list[ServerHandle] = []

    def factory(policy_paths: Sequence[Path | str], extra_args: Sequence[str] = ()) -> ServerHandle:
        handle = start_server(policy_paths, tmp_path_factory.mktemp("nfsguard"), extra_args)
        started.append(handle)
        return handle

    try:
        yield factory
    finally:
        for handle in started:
            handle.stop()
