"""Fixed-rate AdmissionReview load over keep-alive HTTPS, latency without coordinated omission.

Request i is *scheduled* at ``start + i / rate``. A pool of threads, one keep-alive TLS
connection each (HTTP/1.1, ALPN http/1.1, as kube-apiserver connects), takes the next
scheduled request, waits for its time, sends it and reads the answer. Latency is taken
from the scheduled time, not from when the request could be sent: when the server falls
behind, the wait for a free connection counts (wrk2's correction; plain wrk and most
Python clients measure from the send and hide stalls). The time from the send is kept
too ("service" latency).

HTTP is spoken by hand on the raw ``ssl`` socket (prebuilt request bytes, the response
read by Content-Length) so that the client adds as little as possible to what is
measured; the first answer of each connection is checked in full by the caller.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HEADER_END = b"\r\n\r\n"


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    """A POST as kube-apiserver's webhook client sends it."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "User-Agent: kube-apiserver-admission\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Accept: application/json, */*\r\n"
        "Content-Type: application/json\r\n"
        "Accept-Encoding: gzip\r\n"
        "\r\n"
    )
    return head.encode() + body


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is not None:
        ctx = ssl.create_default_context(cafile=str(ca_file))
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Connection:
    """One keep-alive HTTPS connection; ``exchange`` sends a request and returns
    (status, body). Reconnects when the server closed the connection."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, timeout: float) -> None:
        self.host, self.port, self.ctx, self.timeout = host, port, ctx, timeout
        self.sock: ssl.SSLSocket | None = None
        self.buf = b""
        self.connects = 0

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.ctx.wrap_socket(raw, server_hostname=self.host)
        self.buf = b""
        self.connects += 1
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None

    def _read_more(self, sock: ssl.SSLSocket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def exchange(self, payload: bytes) -> tuple[int, bytes]:
        sock = self.sock or self._connect()
        sock.sendall(payload)
        while HEADER_END not in self.buf:
            self._read_more(sock)
        head, _, rest = self.buf.partition(HEADER_END)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        self.buf = rest
        while len(self.buf) < length:
            self._read_more(sock)
        body, self.buf = self.buf[:length], self.buf[length:]
        if close:
            self.close()
        return status, body


@dataclass
class PacedResult:
    rate: float
    scheduled: int
    latencies: list[float] = field(default_factory=list)  # seconds, from the scheduled time
    service: list[float] = field(default_factory=list)  # seconds, from the send
    errors: int = 0
    bad_status: int = 0
    connects: int = 0
    elapsed: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def run_paced(
    host: str,
    port: int,
    body: bytes,
    *,
    rate: float,
    duration: float,
    connections: int = 8,
    path: str = "/mutate?timeout=10s",
    ca_file: Path | None = None,
    timeout: float = 10.0,
) -> PacedResult:
    """Send ``rate * duration`` requests at a fixed rate over ``connections`` keep-alive
    connections; bounded by count, and every request by ``timeout``."""
    total = max(1, int(rate * duration))
    payload = request_bytes(host, port, path, body)
    ctx = client_context(ca_file)
    result = PacedResult(rate=rate, scheduled=total)
    lock = threading.Lock()
    next_index = 0
    conns = [Connection(host, port, ctx, timeout) for _ in range(connections)]
    for conn in conns:  # handshakes and a first exchange before the clock starts
        status, _ = conn.exchange(payload)
        if status != 200:
            raise RuntimeError(f"warm-up request answered {status}")
    start = time.perf_counter() + 0.05

    def worker(conn: Connection) -> None:
        nonlocal next_index
        while True:
            with lock:
                i = next_index
                next_index += 1
            if i >= total:
                return
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0.0005:
                time.sleep(delay - 0.0005)
            while time.perf_counter() < due:
                time.sleep(0)  # the last half millisecond: yield, do not oversleep
            sent = time.perf_counter()
            try:
                status, _ = conn.exchange(payload)
            except (OSError, ValueError, ConnectionError):
                conn.close()
                with lock:
                    result.errors += 1
                continue
            done = time.perf_counter()
            with lock:
                if status != 200:
                    result.bad_status += 1
                result.latencies.append(done - due)
                result.service.append(done - sent)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 10 * timeout)
    result.elapsed = time.perf_counter() - start
    result.connects = sum(c.connects for c in conns)
    for conn in conns:
        conn.close()
    return result
