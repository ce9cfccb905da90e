"""Clients that stall, idle, flood or garble never take the served webhook down (issue 17,
item 1 and the transport's smaller items), on the real ``nfsguard serve`` over TLS.

The bound these tests prove is functional: with 72 hostile connections held open (and
reopened as the server closes them) every ``/mutate``, ``/healthz`` and ``/readyz``
probe on a fresh TLS connection is answered, each within a client timeout of
PROBE_TIMEOUT seconds (docs/operations.md, "Connections", has what that costs when
measured). Before the serving worker (webhook/server/worker.py), 8 such clients made
every probe time out. All traffic is on 127.0.0.1; every test is bounded in count and
time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures.samples import pv
from tests.integration.conftest import (
    LOOPBACK,
    POLICIES,
    ServerHandle,
    admission_review,
    apiserver_session,
    post_review,
)

#: The generous bound a probe must be answered within while clients stall.
PROBE_TIMEOUT = 10.0
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0


def tls_connection(handle: ServerHandle, *, handshake: bool = True) -> socket.socket:
    raw = socket.create_connection((LOOPBACK, handle.port), timeout=PROBE_TIMEOUT)
    if not handshake:
        return raw
    context = ssl.create_default_context(cafile=str(handle.ca_crt))
    return context.wrap_socket(raw, server_hostname=LOOPBACK)


def read_answer(conn: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    conn.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := conn.recv(65536):
            data += chunk
    return data


def read_response(conn: socket.socket) -> bytes:
    """One whole response (headers and Content-Length bytes) on a kept-alive connection."""
    conn.settimeout(PROBE_TIMEOUT)
    data = b""
    while b"\r\n\r\n" not in data:
        data += receive(conn, data)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += receive(conn, head + body)
    return head + b"\r\n\r\n" + body


def receive(conn: socket.socket, so_far: bytes) -> bytes:
    """The next bytes of a response; an AssertionError (not a loop) if the server closed."""
    chunk = conn.recv(65536)
    assert chunk, f"connection closed by the server after {so_far[:300]!r}"
    return chunk


def json_error(answer: bytes) -> tuple[int, dict[str, object]]:
    """The status and JSON body of a whole HTTP answer (the server's one error shape)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), answer[:300]
    return status, json.loads(body)


def probe_all(handle: ServerHandle) -> None:
    """/mutate, /healthz and /readyz, each on a new TLS connection, all answered."""
    session = apiserver_session(handle.ca_crt)
    session.headers["Connection"] = "close"
    try:
        review = admission_review(pv("pv-probe", mount_options=["nfsvers=4.2"]))
        body = json.dumps(review).encode()
        answer = session.post(handle.url("/mutate?timeout=10s"), data=body, timeout=PROBE_TIMEOUT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["response"]["uid"] == review["request"]["uid"]
        for path in ("/healthz", "/readyz"):
            answer = session.get(handle.url(path), timeout=PROBE_TIMEOUT)
            assert answer.status_code == 200, (path, answer.text)
    finally:
        session.close()


class Attackers:
    """Keeps ``per_kind`` connections of each hostile kind open, reopening any the
    server closes, until stopped."""

    KINDS = ("tcp-silent", "tls-hello-part", "headers-part", "body-part", "idle-keepalive")

    def __init__(self, handle: ServerHandle, per_kind: int) -> None:
        self.handle = handle
        self.per_kind = per_kind
        self.stop = threading.Event()
        self.opened = 0
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._keep, args=(kind,), daemon=True) for kind in self.KINDS
        ]

    def _open(self, kind: str) -> socket.socket:
        handle = self.handle
        if kind == "tcp-silent":
            return tls_connection(handle, handshake=False)
        if kind == "tls-hello-part":
            conn = tls_connection(handle, handshake=False)
            conn.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello begun
            return conn
        conn = tls_connection(handle)
        try:
            if kind == "headers-part":
                conn.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
            elif kind == "body-part":
                conn.sendall(
                    b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 5000\r\n\r\n{"kind": "Admiss'
                )
            else:  # one request answered, then the connection kept and left idle
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(conn).startswith(b"HTTP/1.1 200")
        except BaseException:  # reported by _keep; the socket is not left to the GC
            conn.close()
            raise
        return conn

    def _keep(self, kind: str) -> None:
        held: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                alive = []
                for conn in held:  # the server closed it: reopen one
                    conn.setblocking(False)
                    try:
                        closed = conn.recv(65536) == b""
                    except (BlockingIOError, ssl.SSLWantReadError):
                        closed = False
                    except OSError:
                        closed = True
                    if closed:
                        conn.close()
                    else:
                        alive.append(conn)
                held = alive
                while len(held) < self.per_kind and not self.stop.is_set():
                    held.append(self._open(kind))
                    self.opened += 1
                self.stop.wait(0.2)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.failures.append(f"{kind}: {exc!r}")
        finally:
            for conn in held:
                conn.close()

    def __enter__(self) -> Attackers:
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 60
        while self.opened < self.per_kind * len(self.KINDS) and time.monotonic() < deadline:
            assert not self.failures, self.failures
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    from tests.integration.conftest import start_server

    handle = start_server(
        [POLICIES],
        tmp_path_factory.mktemp("hostile"),
        [
            "--header-timeout",
            str(HEADER_TIMEOUT),
            "--body-timeout",
            str(BODY_TIMEOUT),
        ],
    )
    try:
        yield handle
    finally:
        handle.stop()


def metric(handle: ServerHandle, name: str) -> float:
    text = handle.get("/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_stalled_and_idle_clients_never_hold_the_probes(guarded_server: ServerHandle) -> None:
    """72 hostile connections (5 kinds) on a 2-worker x 4-thread server, held past the
    header and body deadlines: every probe is answered, the stalled ones are closed."""
    timed_out = metric(guarded_server, "nfsguard_connections_timed_out_total")
    with Attackers(guarded_server, per_kind=15) as attackers:
        rounds_until = time.monotonic() + 2 * BODY_TIMEOUT  # across the deadlines
        rounds = 0
        while time.monotonic() < rounds_until or rounds < 3:
            probe_all(guarded_server)
            rounds += 1
        assert not attackers.failures, attackers.failures
        reopened = attackers.opened - 75
    assert reopened > 0, "the server never closed a stalled connection"
    assert metric(guarded_server, "nfsguard_connections_timed_out_total") > timed_out
    assert guarded_server.alive()
    assert "Traceback" not in guarded_server.log_text()


def test_a_stalled_request_gets_408_and_is_closed(guarded_server: ServerHandle) -> None:
    for partial in (
        b"POST /mutate HTTP/1.1\r\nHost: x\r\n",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    ):
        conn = tls_connection(guarded_server)
        conn.sendall(partial)
        answer = read_answer(conn)
        conn.close()
        status, body = json_error(answer)
        assert status == 408 and body["code"] == 408, answer
    conn = tls_connection(guarded_server, handshake=False)  # never says hello
    assert read_answer(conn) == b""  # closed, not held
    conn.close()


def test_an_idle_keepalive_connection_is_served_again(guarded_server: ServerHandle) -> None:
    """Past the header deadline an idle kept-alive connection is still open (it waits in
    the loop, without a thread, up to gunicorn's keepalive) and takes the next request."""
    conn = tls_connection(guarded_server)
    for _ in range(2):
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(conn).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT + 1)
    conn.close()


def test_pipelined_requests_are_answered_in_order(guarded_server: ServerHandle) -> None:
    conn = tls_connection(guarded_server)
    conn.sendall(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = read_answer(conn)
    conn.close()
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [200, 404, 200]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-Big: " + b"y" * 70000 + b"\r\n\r\n", 431),
        (
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
            400,
        ),
        (
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
    ],
    ids=["request line", "header", "uri", "headers too large", "chunk size", "chunk end", "coding"],
)
def test_garbled_requests_get_one_line_of_json(
    guarded_server: ServerHandle, request_bytes: bytes, status: int
) -> None:
    """gunicorn's own refusals and a malformed chunked body: the status they call for,
    nfsguard's JSON error (never gunicorn's HTML page, never a 500), no traceback."""
    conn = tls_connection(guarded_server)
    conn.sendall(request_bytes)
    answer = read_answer(conn)
    conn.close()
    got, body = json_error(answer)
    assert (got, body["code"]) == (status, status), answer[:300]
    assert isinstance(body["error"], str) and "\n" not in body["error"]
    probe_all(guarded_server)
    assert "Traceback" not in guarded_server.log_text()


def test_content_type_is_parsed_not_searched(guarded_server: ServerHandle) -> None:
    body = json.dumps(admission_review(pv("pv-ctype"))).encode()
    for ctype in ("application/jsonx", "text/json", "application/json; charset=latin-1"):
        answer = post_review(guarded_server, None, raw=body, headers={"Content-Type": ctype})
        assert answer.status_code == 415, (ctype, answer.text)
    answer = post_review(
        guarded_server, None, raw=body, headers={"Content-Type": "Application/JSON; charset=UTF-8"}
    )
    assert answer.status_code == 200


def test_connections_past_the_limit_are_refused_at_once(
    server_factory: Callable[..., ServerHandle],
) -> None:
    """One worker, at most 16 connections: the 17th and later are closed at once (not
    left in the backlog), counted; when the hogs go, the server answers again."""
    handle = server_factory(
        [POLICIES],
        ["--workers", "1", "--max-connections", "16", "--header-timeout", "60"],
    )
    handle.session.close()  # the readiness check's kept-alive connection
    time.sleep(0.5)
    hogs: list[socket.socket] = []
    try:
        # A refusal can be so quick that the reset beats connect() itself (the client
        # checks SO_ERROR after the handshake, seen under load): refused at once too.
        closed = 0
        for _ in range(40):
            try:
                hogs.append(tls_connection(handle, handshake=False))
            except ConnectionResetError:
                closed += 1
        open_ = list(hogs)
        deadline = time.monotonic() + PROBE_TIMEOUT
        while closed < 24 and time.monotonic() < deadline:
            readable, _, _ = select.select(open_, [], [], 0.5)
            for conn in readable:
                with contextlib.suppress(OSError):
                    conn.recv(1)
                open_.remove(conn)
                closed += 1
        readable, _, _ = select.select(open_, [], [], 1.0)  # the one more, when it comes
        closed += len(readable)
        # 40 - 16: the excess, and only the excess (one more when the worker has not yet
        # seen the readiness check's connection go); the others stay open
        assert closed in (24, 25), closed
    finally:
        for conn in hogs:
            conn.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            probe_all(handle)
            break
        except (requests.RequestException, AssertionError):
            if time.monotonic() > deadline:
                raise
        collect_sockets_ssl_left_open()  # a probe the worker refused, still at its limit
        time.sleep(0.2)
    assert metric(handle, "nfsguard_connections_refused_total") >= 24


def collect_sockets_ssl_left_open() -> None:
    """Finalise, quietly and now, the client sockets CPython's ``ssl`` leaves open when a
    server resets a connection before its TLS handshake: ``SSLSocket._create`` (3.11
    Lib/ssl.py) finds the socket no longer connected (``getpeername``: ENOTCONN), reads
    one byte to look for data, and re-raises that read's ECONNRESET without closing the
    socket it made; urllib3 never gets it, so cannot close it. Left to the collector,
    it warns in whichever later test the collector happens to run in (CI 2026-12-07:
    an unraisable ResourceWarning for an ``SSLSocket`` with no peer address)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def served_by(conn: socket.socket) -> int:
    """The PID of the worker holding kept-alive ``conn`` (its /readyz says)."""
    conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    ready = read_response(conn)
    assert ready.startswith(b"HTTP/1.1 200"), ready
    worker: int = json.loads(ready.partition(b"\r\n\r\n")[2])["reload"]["worker"]
    return worker


def closed_by_server(conn: socket.socket) -> bool:
    """True when the server closes ``conn`` (EOF) within PROBE_TIMEOUT, False when it
    is still held open then."""
    conn.settimeout(PROBE_TIMEOUT)
    try:
        return conn.recv(65536) == b""
    except TimeoutError:
        return False
    except OSError:
        return True  # reset: closed too


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stopping_worker_still_answers_its_kept_alive_connections(tmp_path: Path) -> None:
    """SIGTERM to a worker: a request sent on a connection it kept alive before the stop
    is answered (with ``Connection: close``), not cut. Closing idle connections at once
    failed about 1 review in 500 on a forced pod delete (``http: server closed idle
    connection``: Go does not retry a POST). A connection nobody uses is closed soon
    after, and the worker exits."""
    from tests.integration.conftest import start_server

    handle = start_server([POLICIES], tmp_path / "server", ["--workers", "2"])
    opened: list[socket.socket] = []
    try:
        by_worker: dict[int, list[socket.socket]] = {}
        while not any(len(held) >= 2 for held in by_worker.values()):
            assert len(opened) < 40, "connections never shared a worker"
            conn = tls_connection(handle)
            opened.append(conn)
            by_worker.setdefault(served_by(conn), []).append(conn)
        worker, (used, unused) = next((w, c[:2]) for w, c in by_worker.items() if len(c) >= 2)
        os.kill(worker, signal.SIGTERM)
        time.sleep(0.05)  # the worker is stopping; a client sends on its idle connection
        review = admission_review(pv("pv-stopping", mount_options=["nfsvers=4.2"]))
        body = json.dumps(review).encode()
        used.sendall(
            b"POST /mutate?timeout=10s HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = read_response(used)
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer[:500]
        assert b"connection: close" in head.lower(), head
        assert json.loads(payload)["response"]["uid"] == review["request"]["uid"]
        assert closed_by_server(used), "answered with Connection: close but kept open"
        assert closed_by_server(unused), "an unused kept-alive connection held the stop"
        deadline = time.monotonic() + 30
        while pid_alive(worker):
            assert time.monotonic() < deadline, "the stopping worker never exited"
            time.sleep(0.05)
        probe_all(handle)  # the other worker, and the stopped one's replacement, serve
        assert "Traceback" not in handle.log_text()
    finally:
        for conn in opened:
            conn.close()
        handle.stop()


def test_a_client_that_resets_before_its_handshake_is_no_warning(
    server_factory: Callable[..., ServerHandle],
) -> None:
    """Connect and reset at once (SO_LINGER 0), many times: the worker finds the socket
    already reset when it wraps it for TLS (CPython then raises ECONNRESET). That is the
    client going away, not a server fault: no warning, no traceback, and the server
    answers as before."""
    handle = server_factory([POLICIES], ["--workers", "1"])
    for _ in range(200):
        raw = socket.create_connection((LOOPBACK, handle.port), timeout=PROBE_TIMEOUT)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    probe_all(handle)
    log = handle.log_text()
    assert "no server context" not in log and "Traceback" not in log, log[-3000:]
