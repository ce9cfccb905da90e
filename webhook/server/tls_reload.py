"""Pick up renewed TLS files without dropping a request.

Two mechanisms; the gunicorn runner may use either or both:

1. :func:`gunicorn_ssl_context` -- a value for gunicorn's ``ssl_context`` setting.
   gunicorn (>= 21) builds the server SSLContext through that hook for every new
   connection (sync and gthread workers). The hook returns a cached context and
   rebuilds it only when tls.crt/tls.key changed *and* the new pair loads; while a
   pair is half-written (key updated, certificate not yet) the last good context
   keeps serving. No worker restart, no dropped connection; established keep-alive
   connections finish on the certificate they started with.

2. :func:`watch_tls_files` -- a polling watcher thread calling ``on_change`` once a
   changed pair is complete and loads. With :func:`sighup` as ``on_change``,
   started in the gunicorn master (``when_ready`` hook), the master gracefully
   restarts its workers, which then load the new files. Use this for servers that
   build their SSLContext only once.

Both compare file identity (inode, size, mtime) and content hash, so they work with
atomic ``rename`` writers (``webhook.pki.write_tls_dir``) and with the kubelet's
secret volumes (a ``..data`` symlink swapped atomically; ``subPath`` mounts are never
updated by the kubelet and must not be used for the TLS files).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webhook.server import metrics

__all__ = [
    "CachedServerContext",
    "InvalidCertificate",
    "TLSWatcher",
    "gunicorn_ssl_context",
    "pair_fingerprint",
    "sighup",
    "watch_tls_files",
]

log = logging.getLogger(__name__)

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()  # follows symlinks: a kubelet ..data swap changes the inode
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def pair_fingerprint(tls_dir: Path) -> str | None:
    """SHA-256 over tls.crt and tls.key, or None if either is missing/unreadable."""
    h = hashlib.sha256()
    try:
        for name in (CERT_FILE, KEY_FILE):
            data = (tls_dir / name).read_bytes()
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
    except OSError:
        return None
    return h.hexdigest()


def _pair_loads(tls_dir: Path) -> bool:
    """True if tls.crt and tls.key form a pair the ssl module accepts."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(tls_dir / CERT_FILE, tls_dir / KEY_FILE)
    except (OSError, ssl.SSLError, ValueError):
        return False
    return True


class TLSWatcher(threading.Thread):
    """The thread :func:`watch_tls_files` returns; ``stop()`` ends it."""

    def __init__(self, tls_dir: Path, on_change: Callable[[], None], interval: float) -> None:
        super().__init__(name="nfsguard-tls-watch", daemon=True)
        self.tls_dir = tls_dir
        self.on_change = on_change
        self.interval = interval
        self.changes = 0
        self._stop_event = threading.Event()
        self._baseline = pair_fingerprint(tls_dir)

    def stop(self, timeout: float | None = None) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def run(self) -> None:
        last = self._baseline
        while not self._stop_event.wait(self.interval):
            current = pair_fingerprint(self.tls_dir)
            if current is None or current == last:
                continue
            if not _pair_loads(self.tls_dir):
                log.warning("tls files in %s changed but do not load yet; waiting", self.tls_dir)
                continue
            if pair_fingerprint(self.tls_dir) != current:
                continue  # changed again while we looked; next round
            last = current
            self.changes += 1
            log.info("tls files in %s changed; reloading", self.tls_dir)
            try:
                self.on_change()
            except Exception:
                log.exception("tls reload callback failed")


def watch_tls_files(
    tls_dir: Path, on_change: Callable[[], None], interval: float = 5.0
) -> threading.Thread:
    """Start (and return) a daemon thread that polls ``tls_dir`` every ``interval``
    seconds and calls ``on_change()`` once each time tls.crt/tls.key change to a new
    pair that loads. A half-written or broken pair is not reported; it is reported
    once it becomes valid. The state at the call is the baseline (no call for it).
    Exceptions from ``on_change`` are logged, and the watch goes on.

    The thread is a :class:`TLSWatcher`; ``stop()`` ends it.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    watcher = TLSWatcher(Path(tls_dir), on_change, interval)
    watcher.start()
    return watcher


def sighup(pid: int | None = None) -> Callable[[], None]:
    """An ``on_change`` that sends SIGHUP to ``pid`` (default: this process, i.e. the
    gunicorn master when the watcher runs in its ``when_ready`` hook). gunicorn
    answers HUP by starting new workers and gracefully stopping the old ones."""

    def send() -> None:
        os.kill(pid if pid is not None else os.getpid(), signal.SIGHUP)

    return send


#: (device, inode, size, mtime) of tls.crt and of tls.key.
_FilesKey = tuple[tuple[int, int, int, int], ...]


class InvalidCertificate(ValueError):
    """A pair that loads but must not be served now (expired, not yet valid, wrong names)."""


class CachedServerContext:
    """A server SSLContext for tls.crt/tls.key, rebuilt when they change.

    ``get()`` costs two ``stat`` calls when nothing changed. A changed pair is served
    only when it loads (the key matches the certificate: ``load_cert_chain``) and is
    valid now: not expired, not before its validity, and valid for every name the
    pair in service is (its SANs); kube-apiserver verifies the name, so a pair
    without it fails every call. Otherwise the previous context is kept, and the
    refusal logged once and counted (``nfsguard_tls_reload_total{result="rejected"}``)
    per content of the files, which are looked at again when they change (a pair
    caught mid-update completes). The first ``get()`` raises when there is no pair
    to serve: it does not load, or (unless ``allow_invalid``) is not valid now.
    ``allow_invalid`` also lets a reload serve such a pair (break glass, tests).
    """

    def __init__(
        self,
        tls_dir: Path,
        factory: Callable[[Path, Path], ssl.SSLContext] | None = None,
        *,
        allow_invalid: bool = False,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.tls_dir = Path(tls_dir)
        self._factory = factory or _default_factory
        self.allow_invalid = allow_invalid
        self._clock = clock
        self._lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        self._key: _FilesKey | None = None
        self._names: frozenset[str] = frozenset()
        #: The files' identity when they were last refused: not tried again until it changes.
        self._refused: _FilesKey | None = None

    def _stat(self) -> _FilesKey | None:
        try:
            return (_stat_key(self.tls_dir / CERT_FILE), _stat_key(self.tls_dir / KEY_FILE))
        except OSError:
            return None

    def get(self) -> ssl.SSLContext:
        key = self._stat()
        with self._lock:
            if self._ctx is not None and (key is None or key in (self._key, self._refused)):
                return self._ctx
            try:
                ctx = self._factory(self.tls_dir / CERT_FILE, self.tls_dir / KEY_FILE)
                names = self._check()
            except (OSError, ssl.SSLError, ValueError) as exc:
                if self._ctx is None:
                    raise
                self._refuse(key, exc)
                return self._ctx
            if self._ctx is not None:
                log.info("loaded renewed tls files from %s", self.tls_dir)
                _count("accepted")
            self._ctx, self._key, self._names, self._refused = ctx, key, names, None
            return ctx

    def _check(self) -> frozenset[str]:
        """The SANs of the certificate on disk; raises InvalidCertificate when it must
        not be served now."""
        from cryptography import x509

        from webhook.pki import serving_cert_problems, subject_alt_names

        try:
            cert = x509.load_pem_x509_certificate((self.tls_dir / CERT_FILE).read_bytes())
        except ValueError as exc:
            raise InvalidCertificate(f"tls.crt: {exc}") from None
        problems = serving_cert_problems(cert, self._clock(), must_name=self._names)
        if problems and not self.allow_invalid:
            raise InvalidCertificate(f"{self.tls_dir / CERT_FILE}: {'; '.join(problems)}")
        if problems:
            log.warning(
                "serving tls files from %s that are not valid now "
                "(--allow-invalid-certificate): %s",
                self.tls_dir,
                "; ".join(problems),
            )
        return subject_alt_names(cert)

    def _refuse(
        self, key: tuple[tuple[int, int, int, int], ...] | None, exc: BaseException
    ) -> None:
        if key is not None and key == self._refused:
            return
        self._refused = key
        _count("rejected")
        log.error(
            "tls files in %s refused, keeping the pair in service: %s",
            self.tls_dir,
            " ".join(str(exc).split()) or type(exc).__name__,
        )


def _count(result: str) -> None:
    metrics.TLS_RELOADS.labels(result).inc()


def _default_factory(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def gunicorn_ssl_context(
    tls_dir: Path, *, allow_invalid: bool = False
) -> Callable[[Any, Callable[[], ssl.SSLContext]], Any]:
    """A value for gunicorn's ``ssl_context`` setting serving ``tls_dir``'s pair.

    Set ``certfile``/``keyfile`` to the same files too (gunicorn only turns TLS on
    when ``certfile`` is set). The cache is per process: each worker keeps its own
    context and notices renewed files on its next connection.

    The pair is loaded here, at once (raising if it does not load): called from
    gunicorn's ``load_config`` in the master, that gives every worker, forked later
    or restarted much later, a context to keep. A worker that had to load its first
    context itself would have nothing to fall back on if its first connection came
    while the files were mid-update: the handshake would fail (gunicorn then writes
    a plaintext error page on the TLS connection).
    """
    cache = CachedServerContext(tls_dir, allow_invalid=allow_invalid)
    cache.get()

    def ssl_context(conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> Any:
        return cache.get()

    return ssl_context
