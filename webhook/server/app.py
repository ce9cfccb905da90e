"""The WSGI application: ``/mutate`` on Werkzeug alone, every other route on Flask.

What a review means lives in webhook.admission; this module only moves bytes.

``POST /mutate`` is in the write path of every PersistentVolume and StorageClass, and
the apiserver may call it twice per write. Flask's per-request machinery (application
and request contexts, URL map, signals, a ``Response`` object) cost about 85 us per
review in a loop on the bench machine (the whole request went from 159 to 76 us),
more than the policy decision itself, and a review needs none of it: one path, one
method, a body in, a body out. So :class:`WebhookApp` serves that one route with
Werkzeug's WSGI helpers (input stream, size limit, content type) and hands every other
request (``/healthz``, ``/readyz``, ``/metrics``, unknown paths) to a small Flask app.
docs/performance.md has the measurements.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream

from webhook.admission.errors import AdmissionError, PayloadTooLarge, UnsupportedMediaType
from webhook.admission.handler import ReviewHandler
from webhook.admission.review import MAX_BODY
from webhook.server import metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("nfsguard")

Readiness = Callable[[], tuple[bool, dict[str, Any]]]

#: The one path kube-apiserver calls (manifests/ point the webhook configuration here).
MUTATE_PATH = "/mutate"

#: A refused body up to this size is read and dropped before answering, so that a client
#: still sending it reads the error (and may reuse the connection) instead of a reset;
#: anything larger is answered at once and the connection closed.
DRAIN_LIMIT = 4 * MAX_BODY


@functools.cache
def status_line(code: int) -> str:
    """``413 Request Entity Too Large``: any status an AdmissionError may carry."""
    return f"{code} {HTTPStatus(code).phrase}"


def error_body(status: int, message: str) -> bytes:
    """The JSON of every error nfsguard answers: one line, the reason and the code."""
    return orjson.dumps({"error": message.replace("\n", " "), "code": status})


class WebhookApp:
    """The WSGI callable gunicorn serves. Thread-safe: it holds no per-request state."""

    def __init__(self, handler: ReviewHandler, readiness: Readiness) -> None:
        self.handler = handler
        self.routes = routes_app(readiness)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != MUTATE_PATH:
            return self.routes(environ, start_response)
        method = environ.get("REQUEST_METHOD")
        if method == "POST":
            status, body = self.mutate(environ)
        else:
            status, body = 405, error_body(405, f"{method} {MUTATE_PATH}: use POST")
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if status == 405:
            headers.append(("Allow", "POST"))
        start_response(status_line(status), headers)
        return [body]

    def mutate(self, environ: WSGIEnvironment) -> tuple[int, bytes]:
        """Answer one AdmissionReview: (HTTP status, JSON body)."""
        started = time.perf_counter()
        try:
            ctype = parse_options_header(environ.get("CONTENT_TYPE", ""))[0]
            if ctype and "json" not in ctype:
                raise UnsupportedMediaType(f"Content-Type must be application/json, not {ctype}")
            length = get_content_length(environ)
            if length is not None and length > MAX_BODY:
                raise PayloadTooLarge(f"request body of {length} bytes exceeds {MAX_BODY}")
            try:
                # One byte over MAX_BODY: a chunked body (no Content-Length) is then read
                # as too long (413) rather than silently cut at the limit (a misleading 400).
                stream = get_input_stream(environ, max_content_length=MAX_BODY + 1)
                body = stream.read(MAX_BODY + 1)
            except RequestEntityTooLarge:
                raise PayloadTooLarge(f"request body exceeds {MAX_BODY} bytes") from None
            review, decision = self.handler.handle(body)
        except AdmissionError as exc:
            _drain_body(environ)
            metrics.REVIEW_ERRORS.labels(str(exc.status)).inc()
            log.warning("review refused (%d): %s", exc.status, exc.message)
            return exc.status, error_body(exc.status, exc.message)
        except Exception as exc:  # a bug: say so in one line, log the rest
            log.exception("unexpected error")
            metrics.REVIEW_ERRORS.labels("500").inc()
            return 500, error_body(500, f"internal error: {type(exc).__name__}")
        metrics.REVIEWS.labels(
            decision.target.kind if decision.target else "", decision.outcome
        ).inc()
        metrics.REVIEW_SECONDS.observe(time.perf_counter() - started)
        return 200, orjson.dumps(review)


def _drain_body(environ: WSGIEnvironment) -> None:
    """Read what is left of the request body, at most DRAIN_LIMIT bytes. Best effort:
    a client that breaks off or garbles its body still gets the error it caused."""
    length = get_content_length(environ)  # None when absent or not a number
    if length is not None and length > DRAIN_LIMIT:
        return
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    left = DRAIN_LIMIT
    try:
        while left > 0:
            chunk = stream.read(min(256 * 1024, left))
            if not chunk:
                return
            left -= len(chunk)
    except Exception:  # gunicorn's body parse errors and socket errors alike
        log.debug("request body not drained", exc_info=True)


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return Response(error_body(status, message), status=status, mimetype="application/json")


def routes_app(readiness: Readiness) -> Flask:
    """Everything but /mutate: health, readiness, metrics, and JSON errors for the rest."""
    app = Flask("nfsguard")

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        ready, details = readiness()
        return _json(200 if ready else 503, {"ready": ready, **details})

    @app.get("/metrics")
    def prometheus() -> Response:
        payload, ctype = metrics.exposition()
        return Response(payload, content_type=ctype)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:  # a bug: say so in one line, log the rest
        log.exception("unexpected error")
        return _error(500, f"internal error: {type(exc).__name__}")

    return app
