"""A worker that cannot build what it serves keeps running, says why, and retries.

gunicorn treats an exception while a worker loads its application as fatal to the
whole server: the worker exits with its boot-error code and the master halts,
taking the healthy workers with it. With the audit disk full and a torn last line,
a restarted worker failed in ``open_recorder`` and the master exited; it stayed down
after space was freed (issue 17). So ``load`` never raises: when the parts do not
build, the worker serves :class:`BootingApp`, which answers ``/mutate`` and
``/readyz`` with 503 and the reason (the apiserver applies failurePolicy, the
Service stops sending reviews), ``/livez`` and ``/healthz`` with 200 (a restart
would not help: it retries by itself), ``/metrics`` as usual, and builds the parts
again every RETRY_SECONDS until they build; from then on it is the real application.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import orjson

from webhook.server import metrics
from webhook.server.http import error_body, json_headers, status_line

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("nfsguard.server")

#: Seconds between two attempts (the first retry comes sooner).
RETRY_SECONDS = 2.0


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BootingApp:
    """The WSGI app of a worker whose parts did not build yet (module docstring)."""

    def __init__(
        self,
        build: Callable[[], WSGIApplication],
        error: BaseException,
        *,
        retry: float = RETRY_SECONDS,
    ) -> None:
        self._build = build
        self._retry = retry
        self._app: WSGIApplication | None = None
        self.error = one_line(error)
        self.attempts = 1
        self._stop = threading.Event()
        log.error("worker %d cannot start serving: %s; retrying", os.getpid(), self.error)
        self._thread = threading.Thread(target=self._run, name="nfsguard-boot", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._app is not None

    def _run(self) -> None:
        wait = min(0.5, self._retry)
        while not self._stop.wait(wait):
            wait = self._retry
            self.attempts += 1
            try:
                app = self._build()
            except Exception as exc:
                message = one_line(exc)
                if message != self.error:  # a new reason: said once
                    log.error("worker %d still cannot start serving: %s", os.getpid(), message)
                self.error = message
                continue
            self._app = app
            log.info(
                "worker %d serving after %d attempts (was: %s)",
                os.getpid(),
                self.attempts,
                self.error,
            )
            return

    def stop(self) -> None:
        self._stop.set()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = self._app
        if app is not None:
            return app(environ, start_response)
        path = environ.get("PATH_INFO")
        if path in ("/livez", "/healthz"):
            body = orjson.dumps({"status": "ok", "serving": False, "starting": self.error})
            status = 200
        elif path == "/metrics":
            payload, ctype = metrics.exposition()
            start_response(status_line(200), [("Content-Type", ctype)])
            return [payload]
        elif path == "/readyz":
            status = 503
            body = orjson.dumps(
                {
                    "ready": False,
                    "worker": os.getpid(),
                    "starting": self.error,
                    "attempts": self.attempts,
                }
            )
        else:
            status = 503
            if path == "/mutate":
                metrics.REVIEW_ERRORS.labels("503").inc()
            body = error_body(status, f"worker not serving yet: {self.error}")
        start_response(status_line(status), json_headers(body))
        return [body]
