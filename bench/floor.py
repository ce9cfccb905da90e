"""The floor: a static "allowed" answer served exactly as ``nfsguard serve`` serves.

    .venv/bin/python -m bench.floor --tls-dir D --port N [--workers 2 --threads 4] [--bare]

Same gunicorn application class and ``load_config`` as webhook.server.runner (gthread,
workers x threads, keepalive, timeouts, TLS through the same cached ``ssl_context``,
logging); only the WSGI app differs: a Flask app that reads the body, echoes
``request.uid`` and says ``allowed: true``. No policy, no metrics, no recorder.

That Flask floor is issue 2's: the targets are measured against it. ``--bare`` serves
the same answer from a plain WSGI function instead, with no framework at all. nfsguard
answers ``/mutate`` without Flask (webhook/server/app.py), so against the Flask floor
it is spared a cost the floor pays; the bare floor shows how far nfsguard is from
serving nothing but the answer, so that what nfsguard's own work costs stays in view.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication
from werkzeug.wsgi import get_input_stream

from webhook.server.runner import ServeSettings, _Gunicorn

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def floor_app() -> Flask:
    app = Flask("nfsguard-floor")

    @app.post("/mutate")
    def mutate() -> Response:
        uid = json.loads(request.get_data())["request"]["uid"]
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }
        return Response(json.dumps(body), mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', mimetype="application/json")

    return app


def bare_app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """The floor's answer from a plain WSGI function: no framework."""
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status":"ok"}']
    stream = get_input_stream(environ)
    uid = json.loads(stream.read())["request"]["uid"]
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }
    out = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    start_response("200 OK", headers)
    return [out]


class FloorServer(_Gunicorn):
    """nfsguard's gunicorn application (its ``load_config``) with the floor app loaded
    after fork. No policy is read: only the server configuration is shared."""

    def __init__(self, settings: ServeSettings, bare: bool = False) -> None:
        self.settings = settings
        self.bare = bare
        BaseApplication.__init__(self)

    def load(self) -> WSGIApplication:
        return bare_app if self.bare else floor_app()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8444)
    parser.add_argument("--workers", type=int, default=ServeSettings.workers)
    parser.add_argument("--threads", type=int, default=ServeSettings.threads)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--bare", action="store_true", help="plain WSGI, no Flask")
    args = parser.parse_args(argv)
    settings = ServeSettings(
        policies=(),
        tls_dir=args.tls_dir,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        log_level=args.log_level,
    )
    # As webhook.server.runner.run does, with the floor's application.
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    FloorServer(settings, bare=args.bare).run()


if __name__ == "__main__":
    main()
