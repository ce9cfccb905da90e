"""The serving worker: gunicorn's gthread worker, with every connection read by the
event loop and only whole requests handed to a thread.

Why not gthread as it is: its threads read the TLS handshake, the headers and the
body with blocking calls. Eight clients that send headers (or headers and a few
body bytes) and stall held all 2 x 4 threads for as long as they stayed open;
every ``/mutate``, ``/healthz`` and ``/readyz`` behind them timed out (issue 17).
Here the loop does the handshake, reads headers and body without blocking, and
gives a thread a request only once it is complete (webhook/server/framing.py), so a
stalled or idle client holds a buffer and a file descriptor, never a thread:

* ``header_timeout``: from a connection's accept (or the first byte of a request on
  a kept-alive one) until its headers are complete; then ``body_timeout`` until its
  body is. Past either the client gets a JSON 408 and the connection is closed.
  kube-apiserver sends a review at once; a few seconds are generous.
* kept-alive connections wait in the loop (``keepalive`` seconds, gunicorn's
  setting), holding no thread.
* at most ``max_connections`` open connections per worker (gunicorn's
  ``worker_connections``): one more is accepted and closed at once, counted in
  ``nfsguard_connections_refused_total``; it never waits in the listen backlog
  behind stalled clients.
* at most ``max_buffered`` bytes of unfinished requests per worker: a body that
  would go past it is answered 503 and its connection closed (memory stays bounded
  whatever the clients send).
* new connections go to the worker holding fewest (webhook/server/balance.py): a
  worker with more than a live sibling pauses accepting for a moment and leaves the
  connection to it, for at most ``balance_patience``. Without it a burst of
  kept-alive connections (an apiserver's pool) mostly landed on one worker, whose
  threads then answered every review while the other core idled.

Errors gunicorn answers itself (a malformed request line or header, 431, 501) are
one line of JSON with ``error`` and ``code``, as nfsguard's own are
(webhook/server/http.py), never gunicorn's HTML page.

Stopping (SIGTERM) drains instead of cutting: for as long as clients still use this
worker, it goes on accepting and answering, each answer with ``Connection: close``
(gunicorn's ``handle_request`` does so once the worker is not alive), and it closes
the connections kept alive before the stop only ``stop_quiet`` seconds after it. Closing
every idle connection at once made a POST the apiserver was just writing on one fail
with ``http: server closed idle connection`` (Go retries only idempotent requests;
net/http transport.go ``errServerClosedIdle``): about 1 review in 500 on a
``--grace-period=0 --force`` delete, where the kubelet sends SIGTERM without preStop.
New connections are still accepted meanwhile (answered the same way): until
kube-proxy has removed the pod, the Service sends them here, and one left in the
listen backlog would be reset. The worker exits once no connection is left (a worker
with no client stops at once), or at gunicorn's ``graceful_timeout``. ``stop_quiet`` is
1 s (gunicorn 27's own gthread keeps them 2 s, ``STOP_KEEPALIVE_LINGER``): the
apiserver learns from the first answer on a connection that it closes, and a worker
being replaced is not held much longer than before.

The worker keeps gunicorn's master, its signals and request handling
(``handle_request``: the WSGI call, keep-alive, access log); only the reading of
connections and the stop change. docs/operations.md ("Connections") has the limits and what was
measured.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn import http as ghttp
from gunicorn import sock as gsock
from gunicorn.http import errors as gerrors
from gunicorn.workers.gthread import ThreadWorker

from webhook.server import balance, metrics
from webhook.server.framing import Framed, HeadersTooLarge, frame_request
from webhook.server.http import DRAIN_LIMIT, MAX_BODY, error_body, status_line

log = logging.getLogger("nfsguard.server")


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits every serving worker applies (set by the runner before fork)."""

    header_timeout: float = 5.0
    body_timeout: float = 10.0
    #: A response must be written within this (a client that does not read).
    write_timeout: float = 10.0
    #: How long a closing connection is drained so the client reads its answer.
    close_linger: float = 1.0
    max_buffered: int = 8 * MAX_BODY
    #: While stopping: how long connections kept alive before the stop stay open for
    #: a request a client may already be sending (module docstring).
    stop_quiet: float = 1.0
    #: How long a worker leaves a new connection to a sibling with fewer open
    #: connections before it takes it itself (webhook/server/balance.py); 0: no
    #: balancing, whoever wakes first accepts.
    balance_patience: float = 0.02


#: While a worker leaves new connections to a sibling: how often it looks again.
_BALANCE_RECHECK = 0.001


#: What this process's workers apply; webhook.server.runner sets it before gunicorn forks.
limits = ConnectionLimits()

_RECV_SIZE = 256 * 1024


def _pending(sock: ssl.SSLSocket | socket.socket) -> int:
    """Bytes TLS has decrypted and buffered that the poller cannot see."""
    return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0


#: Connection states.
_HANDSHAKE, _READING, _IDLE, _BUSY, _CLOSING = "handshake", "reading", "idle", "busy", "closing"

#: gunicorn's parse errors and the status each is answered with (else 400).
_ERROR_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (gerrors.LimitRequestLine, 414),
    (gerrors.LimitRequestHeaders, 431),
    (gerrors.UnsupportedTransferCoding, 501),
    (gerrors.ExpectationFailed, 417),
    (gerrors.ForbiddenProxyRequest, 403),
)


class Connection:
    """One client connection and what it has sent that no thread has read yet."""

    __slots__ = (
        "buffer",
        "client",
        "complete",
        "deadline",
        "drain_left",
        "framed",
        "request",
        "server",
        "sock",
        "state",
        "watched",
    )

    def __init__(self, sock: ssl.SSLSocket | socket.socket, client: Any, server: Any) -> None:
        self.sock = sock
        self.client = client
        self.server = server
        self.buffer = bytearray()
        self.state = _HANDSHAKE
        self.deadline = 0.0
        self.framed: Framed | None = None
        self.request = b""
        self.complete = True
        self.drain_left = 0
        #: registered with the worker's poller (not while a thread has it)
        self.watched = False


def json_error_response(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer with nfsguard's JSON error body; the connection closes."""
    body = error_body(status, message)
    head = (
        f"HTTP/1.1 {status_line(status)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def error_status(exc: BaseException) -> int:
    """The status gunicorn's parse error ``exc`` is answered with."""
    for kind, status in _ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    if isinstance(exc, gerrors.ParseException):
        return 400
    return 500


class GuardedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with non-blocking reads in the loop (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.connections: set[Connection] = set()
        self.buffered = 0
        self._closing: deque[Connection] = deque()
        self._last_refusal_log = 0.0
        self._refused_since_log = 0
        # handle_request closes a connection when this many are kept alive: ours are
        # bounded by worker_connections instead.
        self.max_keepalived = self.cfg.worker_connections + 1
        # Built in the master, one worker at a time: the slot is claimed here, taken
        # by the worker once forked (run).
        self.share = balance.TABLE.claim() if self.limits.balance_patience > 0 else None
        self._waiting_since: float | None = None
        self._waited_at = 0.0
        self._accept_paused_until = 0.0

    # -- the loop ---------------------------------------------------------------

    def run(self) -> None:
        self.poller.register(
            self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks
        )
        if self.share is not None:
            self.share.take(os.getpid())
        self.set_accept_enabled(True)
        next_expiry = 0.0
        while self.alive:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=self._poll_timeout(0.25))
            if not self.is_parent_alive():
                break
            now = time.monotonic()
            self._resume_accept(now)
            if now >= next_expiry:  # deadlines are seconds: checked 4 times a second
                self.expire(now)
                next_expiry = now + 0.25
        if self.is_parent_alive():
            self.drain(time.monotonic() + self.cfg.graceful_timeout)
        self.set_accept_enabled(False)
        for conn in list(self.connections):
            self.close(conn)
        if self.share is not None:
            self.share.release()
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()

    def drain(self, deadline: float) -> None:
        """Graceful stop (module docstring): serve whoever still comes, with
        ``Connection: close``, until no connection is left or ``deadline``. Once a
        connection has been answered it closes (the worker is not alive), so the only
        idle ones are those kept alive before the stop: closed ``stop_quiet`` after it."""
        idle_until = time.monotonic() + self.limits.stop_quiet
        while self.connections and time.monotonic() < deadline:
            if time.monotonic() >= idle_until:
                for conn in [c for c in self.connections if c.state == _IDLE]:
                    self.close(conn)
                if not self.connections:
                    return
            self.notify()
            self.wait_for_and_dispatch_events(timeout=self._poll_timeout(0.05))
            self.expire(time.monotonic())
            self._resume_accept(time.monotonic())

    def expire(self, now: float) -> None:
        """Close what has run out of time: 408 for a request not received in time,
        silently for a handshake not finished, an idle kept-alive connection, or a
        connection that is closing."""
        for conn in [c for c in self.connections if c.deadline and c.deadline <= now]:
            if conn.state in (_READING, _HANDSHAKE):
                metrics.CONNECTIONS_TIMED_OUT.inc()
            if conn.state == _READING and conn.buffer:
                self.refuse(conn, 408, "request not received in time")
            else:
                self.close(conn)

    def accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # everything waiting, within reason, before other events
            if self._leave_to_sibling():
                return
            try:
                raw, client = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    return
                raise
            if len(self.connections) >= self.cfg.worker_connections:
                self._refuse_connection(raw)
                continue
            raw.setblocking(False)
            sock: ssl.SSLSocket | socket.socket = raw
            if self.cfg.is_ssl:
                try:
                    sock = gsock.ssl_context(self.cfg).wrap_socket(
                        raw,
                        server_side=True,
                        do_handshake_on_connect=False,
                        suppress_ragged_eofs=True,
                    )
                except (OSError, ValueError) as exc:
                    raw.close()
                    if isinstance(exc, ConnectionError) or (
                        isinstance(exc, OSError) and exc.errno == errno.ENOTCONN
                    ):
                        # The client reset the connection before we wrapped it (CPython's
                        # SSLSocket._create re-raises ECONNRESET): the client's leaving,
                        # not a fault here, and a hostile client must not flood the log.
                        log.debug("connection from %s reset before TLS", client)
                    else:
                        log.warning("tls: no server context; connection closed: %s", exc)
                    continue
            conn = Connection(sock, client, listener.getsockname())
            conn.deadline = time.monotonic() + self.limits.header_timeout
            self.connections.add(conn)
            self._counted()
            if self.cfg.is_ssl:
                self._reregister(conn, selectors.EVENT_READ, partial(self.on_handshake, conn))
            else:
                conn.state = _READING
                self._reregister(conn, selectors.EVENT_READ, partial(self.on_readable, conn))

    def _counted(self) -> None:
        self.nr_conns = len(self.connections)
        if self.share is not None:
            self.share.set(self.nr_conns)

    def _leave_to_sibling(self) -> bool:
        """Whether to leave the waiting connection to a sibling worker that holds fewer
        (webhook/server/balance.py): then accepting pauses for a moment, and this
        worker looks again. After ``balance_patience`` of waiting it takes the
        connection whatever the counts say."""
        share = self.share
        if share is None or not share.crowded():
            self._waiting_since = None
            return False
        now = time.monotonic()
        if self._waiting_since is None or now - self._waited_at > self.limits.balance_patience:
            self._waiting_since = now  # a new connection to leave (not the last one)
        if now - self._waiting_since >= self.limits.balance_patience:
            self._waiting_since = None  # the sibling did not take it: take it
            return False
        self._waited_at = now
        self.set_accept_enabled(False)
        self._accept_paused_until = now + _BALANCE_RECHECK
        return True

    def _resume_accept(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self.set_accept_enabled(True)

    def _poll_timeout(self, timeout: float) -> float:
        """``timeout``, or less when accepting resumes sooner."""
        if not self._accept_paused_until:
            return timeout
        return max(0.0, min(timeout, self._accept_paused_until - time.monotonic()))

    def _refuse_connection(self, raw: socket.socket) -> None:
        metrics.CONNECTIONS_REFUSED.inc()
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._last_refusal_log > 10:
            log.warning(
                "connection limit reached (%d open in this worker): refused %d connection(s)",
                len(self.connections),
                self._refused_since_log,
            )
            self._last_refusal_log, self._refused_since_log = now, 0
        with contextlib.suppress(OSError):  # reset at once: the client learns now
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()

    def _reregister(self, conn: Connection, events: int, callback: Any) -> None:
        """Watch ``conn`` for ``events``. Whether it is registered is known
        (:attr:`Connection.watched`), so the common case, a connection back from a
        thread, registers at once: asking ``modify`` first costs a KeyError whose
        message formats the socket's repr, on every keep-alive request (py-spy: 4 % of the
        samples in which a worker held the GIL at saturation; docs/performance.md)."""
        if conn.watched:
            try:
                self.poller.modify(conn.sock, events, callback)
                return
            except (KeyError, ValueError):
                pass
        self.poller.register(conn.sock, events, callback)
        conn.watched = True

    def _unwatch(self, conn: Connection) -> None:
        conn.watched = False
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def on_handshake(self, conn: Connection, _fileobj: Any = None) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._reregister(conn, selectors.EVENT_READ, partial(self.on_handshake, conn))
            return
        except ssl.SSLWantWriteError:
            self._reregister(conn, selectors.EVENT_WRITE, partial(self.on_handshake, conn))
            return
        except (OSError, ValueError) as exc:
            log.debug("tls handshake with %s failed: %s", conn.client, exc)
            self.close(conn)
            return
        conn.state = _READING
        self._reregister(conn, selectors.EVENT_READ, partial(self.on_readable, conn))
        self.on_readable(conn)  # the client may have sent its request with the handshake

    def on_readable(self, conn: Connection, _fileobj: Any = None) -> None:
        """Read what is there; hand the request to a thread once it is whole."""
        if conn.state == _CLOSING:
            self._drain(conn)
            return
        received = self._receive(conn)
        if received is None:
            return  # closed
        if conn.state == _IDLE and conn.buffer:
            conn.state = _READING
            conn.deadline = time.monotonic() + self.limits.header_timeout
            conn.framed = None
        if conn.state == _READING:
            self.try_dispatch(conn)

    def _receive(self, conn: Connection) -> int | None:
        """Everything readable now into the buffer; None when the connection closed."""
        total = 0
        while True:
            try:
                data = conn.sock.recv(_RECV_SIZE)
            except (ssl.SSLWantReadError, BlockingIOError):
                return total
            except ssl.SSLWantWriteError:
                return total
            except (OSError, ValueError):
                self.close(conn)
                return None
            if not data:
                self.close(conn)
                return None
            conn.buffer += data
            self.buffered += len(data)
            total += len(data)
            if self.buffered > self.limits.max_buffered:
                metrics.CONNECTIONS_REFUSED.inc()
                self.refuse(conn, 503, "server busy: too many unfinished requests")
                return None
            if len(data) < _RECV_SIZE and not _pending(conn.sock):
                # All there is for now: the poller (level-triggered) says when more
                # comes, without another recv failing here first.
                return total

    def try_dispatch(self, conn: Connection) -> None:
        had_headers = conn.framed is not None
        try:
            framed = frame_request(conn.buffer, max_body=MAX_BODY)
        except HeadersTooLarge as exc:
            self.refuse(conn, 431, str(exc))
            return
        if framed is None:
            end = conn.buffer.find(b"\r\n\r\n")
            if not had_headers and end >= 0:
                # Headers whole, body not yet: the body deadline starts now.
                conn.framed = Framed(0, False)
                conn.deadline = time.monotonic() + self.limits.body_timeout
                if b"100-continue" in bytes(conn.buffer[:end]).lower():
                    self._send_continue(conn)
            return
        request = bytes(conn.buffer[: framed.length])
        del conn.buffer[: framed.length]
        self.buffered -= framed.length
        conn.request, conn.complete, conn.framed = request, framed.complete, None
        conn.state = _BUSY
        conn.deadline = 0.0
        self._unwatch(conn)
        self.enqueue_req(conn)

    def _send_continue(self, conn: Connection) -> None:
        """``Expect: 100-continue``: the client waits for this before its body
        (RFC 9110 section 10.1.1); gunicorn would only send it once the body is here."""
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def refuse(self, conn: Connection, status: int, message: str) -> None:
        """Answer ``status`` from the loop and close (no thread, no WSGI)."""
        log.warning("request from %s refused (%d): %s", conn.client[0], status, message)
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(json_error_response(status, message))
        self.begin_close(conn)

    def begin_close(self, conn: Connection, *, unread_body: bool = False) -> None:
        """Half-close and drain, so the client reads the answer before the connection
        goes (RFC 9112 section 9.6), without blocking the loop: for a moment, or, when
        the client may still be sending a body that was refused (413), until it has
        sent it (at most DRAIN_LIMIT bytes and ``body_timeout`` seconds)."""
        self.buffered -= len(conn.buffer)
        conn.buffer.clear()
        try:
            conn.sock.setblocking(False)  # a thread may have left a write timeout
            conn.sock.shutdown(socket.SHUT_WR)  # also ends TLS's use of the socket
        except (OSError, ValueError):
            self.close(conn)
            return
        conn.state = _CLOSING
        linger = self.limits.body_timeout if unread_body else self.limits.close_linger
        conn.deadline = time.monotonic() + linger
        conn.drain_left = DRAIN_LIMIT
        self._reregister(conn, selectors.EVENT_READ, partial(self.on_readable, conn))

    def _drain(self, conn: Connection) -> None:
        try:
            while conn.drain_left > 0:
                data = conn.sock.recv(_RECV_SIZE)
                if not data:
                    break
                conn.drain_left -= len(data)
            else:
                log.debug(
                    "closing %s: more than %d bytes after a refusal", conn.client, DRAIN_LIMIT
                )
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (OSError, ValueError):
            pass
        self.close(conn)

    def close(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self._counted()
        self.buffered -= len(conn.buffer)
        conn.buffer.clear()
        self._unwatch(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()

    # -- in a thread --------------------------------------------------------------

    def handle(self, conn: Connection) -> bool:
        """Answer the request framed for ``conn`` (a worker thread). True when the
        connection stays open for another request."""
        req = None
        try:
            conn.sock.settimeout(self.limits.write_timeout)
            parser = ghttp.get_parser(self.cfg, iter((conn.request,)), conn.client)
            req = next(parser)
            if not req:
                return False
            if not conn.complete:  # its body is not all here: answered, then closed
                req.must_close = True  # so the answer says "Connection: close"
            keepalive = bool(self.handle_request(req, conn))
            return keepalive and conn.complete
        except StopIteration:
            return False
        except gerrors.NoMoreData:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                log.debug("socket error answering %s: %s", conn.client, exc)
            return False
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
            return False

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's error answer, as nfsguard's one line of JSON instead of HTML."""
        status = error_status(exc)
        if status >= 500 and not isinstance(exc, gerrors.UnsupportedTransferCoding):
            log.error("error handling request: %s", exc, exc_info=exc)
            message = f"internal error: {type(exc).__name__}"
        else:
            message = str(exc) or type(exc).__name__
            log.warning("invalid request from %s (%d): %s", (addr or ("",))[0], status, message)
        with contextlib.suppress(OSError, ValueError):
            client.sendall(json_error_response(status, message))

    # -- back in the loop ----------------------------------------------------------

    def finish_request(self, conn: Connection, fs: Any) -> None:
        """After a thread answered: keep the connection for the next request, or close."""
        if conn not in self.connections:
            return
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        if not keep or not self.alive:
            self.begin_close(conn, unread_body=not conn.complete)
            return
        try:
            conn.sock.setblocking(False)
        except OSError:
            self.close(conn)
            return
        conn.request = b""
        conn.state = _IDLE
        conn.deadline = time.monotonic() + self.cfg.keepalive
        self._reregister(conn, selectors.EVENT_READ, partial(self.on_readable, conn))
        if conn.buffer:  # pipelined: the next request may already be here
            conn.state = _READING
            conn.deadline = time.monotonic() + self.limits.header_timeout
            self.try_dispatch(conn)

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread's keep-alive expiry; here :meth:`expire` does it."""
        if force:
            for conn in list(self.connections):
                self.close(conn)
