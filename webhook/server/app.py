"""The WSGI application: ``/mutate`` on Werkzeug alone, every other route on Flask.

What a review means lives in webhook.admission; this module only moves bytes.

``POST /mutate`` is in the write path of every PersistentVolume and StorageClass, and
the apiserver may call it twice per write. Flask's per-request machinery (application
and request contexts, URL map, signals, a ``Response`` object) cost about 85 us per
review in a loop on the bench machine (the whole request went from 159 to 76 us),
more than the policy decision itself, and a review needs none of it: one path, one
method, a body in, a body out. So :class:`WebhookApp` serves that one route through
webhook.server.http (method, content type, size limit, reading) and hands every other
request (``/healthz``, ``/readyz``, ``/metrics``, unknown paths) to a small Flask app.
docs/performance.md has the measurements.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response
from werkzeug.exceptions import ClientDisconnected, HTTPException

from webhook.admission.errors import AdmissionError, Unavailable, UnreviewableObject
from webhook.admission.handler import ReviewHandler
from webhook.api.decision import Decision
from webhook.api.review import AdmissionRequest
from webhook.server import metrics
from webhook.server.health import RecordingHealth
from webhook.server.http import (
    MethodNotAllowed,
    TransportError,
    drain_body,
    error_body,
    json_headers,
    read_review_body,
    status_line,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("nfsguard")
#: One line per admission decision, at info (docs/operations.md): who asked what, and
#: what was decided; never the object's body.
decisions_log = logging.getLogger("nfsguard.decision")

Readiness = Callable[[], tuple[bool, dict[str, Any]]]

#: The one path kube-apiserver calls (manifests/ point the webhook configuration here).
MUTATE_PATH = "/mutate"

#: The label an in-band refusal is counted under in nfsguard_review_errors_total.
_REFUSED_IN_BAND = str(UnreviewableObject.status)


class WebhookApp:
    """The WSGI callable gunicorn serves. Thread-safe: it holds no per-request state."""

    def __init__(
        self,
        handler: ReviewHandler,
        readiness: Readiness,
        recording: RecordingHealth | None = None,
    ) -> None:
        self.handler = handler
        self.routes = routes_app(readiness)
        #: Told when a decision cannot be recorded, and when one is again (/readyz).
        self.recording = recording

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != MUTATE_PATH:
            return self.routes(environ, start_response)
        status, body, extra = self.mutate(environ)
        start_response(status_line(status), json_headers(body, extra))
        return [body]

    def mutate(self, environ: WSGIEnvironment) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        """Answer one request to /mutate: (HTTP status, JSON body, headers beyond the two
        every answer has)."""
        started = time.perf_counter()
        try:
            answer = self.handler.handle(read_review_body(environ))
        except MethodNotAllowed as exc:  # not a review: neither counted nor drained
            return exc.status, error_body(exc.status, exc.message), exc.headers
        except ClientDisconnected:  # the body ended before its Content-Length: no answer read
            metrics.REVIEW_ERRORS.labels("400").inc()
            log.warning("review refused (400): request body cut short")
            return 400, error_body(400, "request body cut short"), ()
        except (TransportError, AdmissionError) as exc:
            drain_body(environ)
            if isinstance(exc, Unavailable) and self.recording is not None:
                self.recording.failed(exc.message)
            metrics.REVIEW_ERRORS.labels(str(exc.status)).inc()
            log.warning("review refused (%d): %s", exc.status, exc.message)
            return exc.status, error_body(exc.status, exc.message), ()
        except Exception as exc:  # a bug: say so in one line, log the rest
            log.exception("unexpected error")
            metrics.REVIEW_ERRORS.labels("500").inc()
            return 500, error_body(500, f"internal error: {type(exc).__name__}"), ()
        decision = answer.decision
        recording = self.recording
        if recording is not None and recording.failure and decision and decision.recorded:
            recording.recorded()  # a decision recorded again: the trail writes
        if decision is None:  # answered in band: allowed false, status.code 400
            metrics.REVIEW_ERRORS.labels(_REFUSED_IN_BAND).inc()
            log.warning("review refused in band (%s): %s", _REFUSED_IN_BAND, answer.refusal)
        else:
            kind = decision.target.kind if decision.target else ""
            metrics.REVIEWS.labels(kind, decision.outcome).inc()
            elapsed = time.perf_counter() - started
            metrics.REVIEW_SECONDS.observe(elapsed)
            request = answer.request
            if request is not None:
                if decision.target is not None:  # in scope: kinds and operations bounded
                    ref = decision.deciding
                    metrics.DECISIONS.labels(
                        kind,
                        request.operation,
                        decision.outcome.value,
                        ref.policy if ref else "",
                        ref.rule if ref else "",
                    ).inc()
                if decisions_log.isEnabledFor(logging.INFO):  # every answered review
                    decisions_log.info(
                        "decision",
                        extra={"fields": decision_fields(request, decision, elapsed)},
                    )
        return 200, orjson.dumps(answer.review), ()


def decision_fields(
    request: AdmissionRequest, decision: Decision, seconds: float
) -> dict[str, Any]:
    """The fields of the per-decision log line (no object body, no patch)."""
    ref = decision.deciding
    return {
        "uid": request.uid,
        "kind": request.kind,
        "name": request.display_name,
        "namespace": request.namespace,
        "operation": request.operation,
        "user": request.user.username,
        "dryRun": request.dry_run,
        "policy": ref.policy if ref else None,
        "version": ref.policy_version if ref else None,
        "rule": ref.rule if ref else None,
        "outcome": decision.outcome.value,
        "durationMs": round(seconds * 1000, 3),
    }


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

    @app.get("/livez")
    def livez() -> Response:  # the process answers: restart it only when it does not
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
