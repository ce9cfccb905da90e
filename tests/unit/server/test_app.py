"""The WSGI application (webhook/server/app.py) called through Werkzeug's test client:
``/mutate`` served without Flask, every other path by the Flask routes.

The served suite (tests/integration/test_server.py) sends the same requests over TLS to
a real gunicorn; here is what that cannot reach: a bug inside a review (the 500 path),
and each method on /mutate.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any, TypeVar

import jsonpatch
import pytest
from werkzeug.test import Client

from tests.fixtures.samples import pv
from tests.integration.conftest import POLICIES, admission_review
from webhook.admission.errors import AdmissionError
from webhook.admission.handler import ReviewHandler
from webhook.admission.recorder import NullRecorder
from webhook.api.decision import Decision
from webhook.api.review import AdmissionRequest
from webhook.cli.common import load_engine
from webhook.engine.engine import Engine
from webhook.server.app import MUTATE_PATH, WebhookApp
from webhook.server.http import TransportError, status_line

E = TypeVar("E", bound=Exception)
ENGINE = load_engine((str(POLICIES),))  # the incident's site policy and the other actions


def ready() -> tuple[bool, dict[str, Any]]:
    return True, {"policies": []}


def client(engine: Any = lambda: ENGINE, recorder: NullRecorder | None = None) -> Client:
    return Client(WebhookApp(ReviewHandler(engine, recorder=recorder), ready))


def one_line_error(body: bytes, status: int) -> str:
    assert body.count(b"\n") == 0
    data = json.loads(body)
    assert data["code"] == status
    assert isinstance(data["error"], str) and data["error"]
    return str(data["error"])


def test_a_review_is_answered_without_flask_and_its_patch_applies() -> None:
    obj = pv("pv-app", server="192.168.100.7", path="/data1/k8sdev/app")
    review = admission_review(obj)
    http = client().post(
        MUTATE_PATH + "?timeout=10s",
        data=json.dumps(review),
        headers={"Content-Type": "application/json"},
    )
    assert http.status_code == 200
    assert http.headers["Content-Type"] == "application/json"
    assert int(http.headers["Content-Length"]) == len(http.data)
    response = json.loads(http.data)["response"]
    assert response["uid"] == review["request"]["uid"]
    patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"])))
    assert patch.apply(obj)["spec"]["mountOptions"] == ["nfsvers=4.0"]


def test_a_bug_in_a_review_is_a_one_line_500_and_the_next_review_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = []

    def engine() -> Engine:  # the first review meets a bug, the next ones do not
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("engine exploded")
        return ENGINE

    app = client(engine)
    body = json.dumps(
        admission_review(pv("pv-bug", server="192.168.100.7", path="/data1/k8sdev/bug"))
    )
    with caplog.at_level(logging.ERROR, logger="nfsguard"):
        http = app.post(MUTATE_PATH, data=body, headers={"Content-Type": "application/json"})
    assert http.status_code == 500
    assert one_line_error(http.data, 500) == "internal error: RuntimeError"
    assert "engine exploded" in caplog.text  # the traceback goes to the log, not the client
    again = app.post(MUTATE_PATH, data=body, headers={"Content-Type": "application/json"})
    assert again.status_code == 200
    assert "patch" in json.loads(again.data)["response"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_mutate_takes_only_post(method: str) -> None:
    http = client().open(MUTATE_PATH, method=method)
    assert http.status_code == 405
    assert http.headers["Allow"] == "POST"
    assert method in one_line_error(http.data, 405)


def test_other_paths_go_to_the_flask_routes() -> None:
    app = client()
    assert json.loads(app.get("/healthz").data) == {"status": "ok"}
    assert json.loads(app.get("/readyz").data) == {"ready": True, "policies": []}
    missing = app.post("/validate", data=b"{}")
    assert missing.status_code == 404
    one_line_error(missing.data, 404)
    assert app.post(MUTATE_PATH + "/", data=b"{}").status_code == 404


def test_a_refused_body_is_a_one_line_4xx() -> None:
    app = client()
    wrong_type = app.post(MUTATE_PATH, data=b"{}", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert "text/plain" in one_line_error(wrong_type.data, 415)
    not_json = app.post(MUTATE_PATH, data=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    one_line_error(not_json.data, 400)


def test_an_object_that_cannot_be_reviewed_is_refused_in_band(
    caplog: pytest.LogCaptureFixture,
) -> None:
    obj = pv("pv-odd", server="192.168.100.7", path="/data1/k8sdev/odd")
    obj["spec"]["mountOptions"] = "vers=4.1"  # a string: no apiserver sends it
    review = admission_review(obj)
    with caplog.at_level(logging.WARNING, logger="nfsguard"):
        http = client().post(
            MUTATE_PATH, data=json.dumps(review), headers={"Content-Type": "application/json"}
        )
    assert http.status_code == 200
    assert int(http.headers["Content-Length"]) == len(http.data)
    response = json.loads(http.data)["response"]
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 400
    assert "pv-odd" in response["status"]["message"]
    assert "refused in band (400)" in caplog.text


class BrokenRecorder(NullRecorder):
    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        raise OSError("disk full")


def test_a_decision_that_cannot_be_recorded_is_a_503() -> None:
    body = json.dumps(
        admission_review(pv("pv-503", server="192.168.100.7", path="/data1/k8sdev/x"))
    )
    http = client(recorder=BrokenRecorder()).post(
        MUTATE_PATH, data=body, headers={"Content-Type": "application/json"}
    )
    assert http.status_code == 503
    assert http.data == b'{"error":"decision could not be recorded: disk full","code":503}'


def test_every_error_has_a_status_line() -> None:
    """Admission's (400, 503) and the transport's (405, 413, 415) alike."""

    def subclasses(cls: type[E]) -> list[type[E]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    codes = [cls.status for cls in subclasses(AdmissionError)]
    codes += [cls.status for cls in subclasses(TransportError)]
    lines = {code: status_line(code) for code in codes}
    assert lines[413] == "413 Request Entity Too Large"
    assert all(line.startswith(f"{code} ") and len(line) > 4 for code, line in lines.items())
