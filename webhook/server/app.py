"""The Flask app: routes only. What a review means lives in webhook.admission."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from webhook.admission.errors import AdmissionError, PayloadTooLarge, UnsupportedMediaType
from webhook.admission.handler import ReviewHandler
from webhook.admission.wire import MAX_BODY
from webhook.server import metrics

log = logging.getLogger("nfsguard")

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message.replace("\n", " "), "code": status})
    response.status_code = status
    return response


#: A refused body up to this size is read and dropped before answering, so that a client
#: still sending it reads the error (and may reuse the connection) instead of a reset;
#: anything larger is answered at once and the connection closed.
DRAIN_LIMIT = 4 * MAX_BODY


def _drain_body() -> None:
    """Read what is left of the request body, at most DRAIN_LIMIT bytes."""
    length = request.content_length
    if length is not None and length > DRAIN_LIMIT:
        return
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    left = DRAIN_LIMIT
    while left > 0:
        chunk = stream.read(min(256 * 1024, left))
        if not chunk:
            return
        left -= len(chunk)


def create_app(handler: ReviewHandler, readiness: Readiness) -> Flask:
    app = Flask("nfsguard")
    # One byte over MAX_BODY: a chunked body (no Content-Length) is then read as too
    # long (413) rather than silently cut at the limit (a misleading 400).
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY + 1

    @app.post("/mutate")
    def mutate() -> Response:
        started = time.perf_counter()
        try:
            ctype = request.mimetype or ""
            if ctype and "json" not in ctype:
                raise UnsupportedMediaType(f"Content-Type must be application/json, not {ctype}")
            length = request.content_length
            if length is not None and length > MAX_BODY:
                raise PayloadTooLarge(f"request body of {length} bytes exceeds {MAX_BODY}")
            try:
                body = request.stream.read(MAX_BODY + 1)  # one more: too long, not truncated
            except RequestEntityTooLarge:
                raise PayloadTooLarge(f"request body exceeds {MAX_BODY} bytes") from None
            review, decision = handler.handle(body)
        except AdmissionError as exc:
            _drain_body()
            metrics.REVIEW_ERRORS.labels(str(exc.status)).inc()
            log.warning("review refused (%d): %s", exc.status, exc.message)
            return _error(exc.status, exc.message)
        metrics.REVIEWS.labels(
            decision.target.kind if decision.target else "", decision.outcome
        ).inc()
        metrics.REVIEW_SECONDS.observe(time.perf_counter() - started)
        return Response(orjson.dumps(review), mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        ready, details = readiness()
        response = jsonify({"ready": ready, **details})
        response.status_code = 200 if ready else 503
        return response

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
