"""AdmissionReview v1 parsing and the answer helpers (webhook/admission/review.py) and the
review handler (webhook/admission/handler.py), without HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.support import engine_for
from webhook.admission.errors import BadRequest, Unavailable, UnreviewableObject
from webhook.admission.handler import ReviewHandler, audit_annotations, decide
from webhook.admission.recorder import DecisionRecorder, NullRecorder
from webhook.admission.review import allowed, denied, errored, parse_review, patched
from webhook.api.decision import Decision
from webhook.api.review import AdmissionRequest
from webhook.audit import open_recorder
from webhook.nfs.inventory import UnknownInventory

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: site-rules}
spec:
  version: "2026.11.27-1"
  rules:
  - name: incident-node003-hang
    match:
      exports: [{server: 192.168.100.7, path: /data1/k8sdev/**}]
    action: pin
  - name: legacy
    match:
      exports: [{server: "*.legacy.corp"}]
    action: deny
"""
ENGINE = engine_for([("site.yaml", POLICY)])
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def pv(server: str = "192.168.100.7", **spec: Any) -> dict[str, Any]:
    return {
        "kind": "PersistentVolume",
        "apiVersion": "v1",
        "metadata": {"name": "pv-nfs"},
        "spec": {"nfs": {"server": server, "path": "/data1/k8sdev/hl"}, **spec},
    }


def review(obj: Any = None, **request: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
        "kind": {"group": "", "version": "v1", "kind": "PersistentVolume"},
        "resource": {"group": "", "version": "v1", "resource": "persistentvolumes"},
        "name": "pv-nfs",
        "operation": "CREATE",
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
        "object": pv() if obj is None else obj,
        "oldObject": None,
        "dryRun": False,
    }
    body.update(request)
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": body}


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_parse_a_review() -> None:
    request = parse_review(encode(review(dryRun=True, namespace="")))
    assert request.uid == "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    assert request.kind == "PersistentVolume"
    assert request.resource == "persistentvolumes"
    assert request.operation == "CREATE"
    assert request.name == "pv-nfs"
    assert request.dry_run is True
    assert request.user.username == "kubernetes-admin"
    assert request.user.groups == ("system:masters",)
    assert request.object == pv()


def test_display_name_with_generate_name() -> None:
    obj = pv()
    obj["metadata"] = {"generateName": "pv-"}
    assert parse_review(encode(review(obj, name=""))).display_name == "pv-*"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (encode({**review(), "apiVersion": "v1"}), "apiVersion"),
        (encode({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}), "request"),
        (encode(review(uid="")), "uid"),
        (encode(review(uid=None)), "request.uid must be a string"),
        (encode(review(kind="PersistentVolume")), "request.kind must be an object"),
        (encode(review(operation=1)), "request.operation"),
        (encode(review(object="x")), "request.object"),
        (encode(review(oldObject=[1])), "request.oldObject"),
        (encode(review(dryRun="false")), "request.dryRun"),
        (encode(review(userInfo={"groups": "a"})), "request.userInfo.groups"),
    ],
)
def test_bad_reviews(body: bytes, needle: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_review(body)
    assert info.value.status == 400
    assert needle in info.value.message
    assert "\n" not in info.value.message


def test_missing_object_on_create_and_update() -> None:
    body = review()
    body["request"]["object"] = None
    with pytest.raises(BadRequest, match=r"request\.object is required for CREATE"):
        parse_review(encode(body))
    # DELETE carries no object
    body["request"]["operation"] = "DELETE"
    body["request"]["oldObject"] = pv()
    assert parse_review(encode(body)).object is None


def test_answer_helpers_shapes() -> None:
    ops: list[Mapping[str, Any]] = [
        {"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]}
    ]
    with_patch = patched("u1", ops, warnings=("w",), audit_annotations={"a": "b"})
    assert with_patch["apiVersion"] == "admission.k8s.io/v1"
    assert with_patch["kind"] == "AdmissionReview"
    response = with_patch["response"]
    assert response["uid"] == "u1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == ops
    assert response["warnings"] == ["w"] and response["auditAnnotations"] == {"a": "b"}
    plain = allowed("u2")["response"]
    assert plain == {"uid": "u2", "allowed": True}
    assert patched("u2", ())["response"] == plain  # no operations: allowed unchanged
    refused = denied("u3", "no", code=200)["response"]
    assert refused["allowed"] is False
    assert refused["status"]["code"] >= 400 and refused["status"]["message"] == "no"
    assert refused["status"]["reason"] == "Forbidden"
    assert "patch" not in refused and "patchType" not in refused
    assert denied("u3", "no")["response"]["status"]["code"] == 403


def test_answers_keep_the_wire_bytes() -> None:
    """The helpers give the bytes ``review_response`` gave (key order included), so an
    apiserver or a test comparing answers sees no change."""
    ops: list[Mapping[str, Any]] = [{"op": "replace", "path": "/spec/x", "value": 1}]
    patch = base64.b64encode(b'[{"op":"replace","path":"/spec/x","value":1}]').decode()
    assert orjson.dumps(patched("u", ops, warnings=("w",), audit_annotations={"a": "b"})) == (
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":'
        b'{"uid":"u","allowed":true,"patchType":"JSONPatch","patch":"' + patch.encode() + b'",'
        b'"warnings":["w"],"auditAnnotations":{"a":"b"}}}'
    )
    assert orjson.dumps(denied("u", "m", audit_annotations={"a": "b"})) == (
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":'
        b'{"uid":"u","allowed":false,"status":{"code":403,"reason":"Forbidden","message":"m"},'
        b'"auditAnnotations":{"a":"b"}}}'
    )


def test_errored_refuses_in_band_on_one_line() -> None:
    response = errored("u4", 400, "PersistentVolume pv: spec\nmust be an object")["response"]
    assert response == {
        "uid": "u4",
        "allowed": False,
        "status": {
            "code": 400,
            "message": "PersistentVolume pv: spec must be an object",
            "reason": "BadRequest",
        },
    }
    assert "reason" not in errored("u5", 422, "x")["response"]["status"]


def test_handler_pins_denies_and_ignores() -> None:
    handler = ReviewHandler(lambda: ENGINE)
    body, decision, _, _ = handler.handle(encode(review()))
    response = body["response"]
    assert response["uid"] == "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    ops = json.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(pv(), ops)
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0"]
    assert decision is not None and decision.outcome.value == "mutated"
    for key in response["auditAnnotations"]:
        assert "/" not in key and len(key) <= 63 and QUALIFIED_NAME.match(key)

    body, decision, _, _ = handler.handle(encode(review(pv("filer.legacy.corp"))))
    assert body["response"]["allowed"] is False
    assert "legacy" in body["response"]["status"]["message"]

    other = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}
    config_map = review(other, kind={"group": "", "version": "v1", "kind": "ConfigMap"})
    body, decision, _, _ = handler.handle(encode(config_map))
    assert body["response"] == {"uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816", "allowed": True}
    assert decision is not None and decision.outcome.value == "ignored"


def test_handler_tolerates_objects_without_type_meta() -> None:
    obj = pv()
    del obj["kind"]
    del obj["apiVersion"]
    body, decision, _, _ = ReviewHandler(lambda: ENGINE).handle(encode(review(obj)))
    assert decision is not None and decision.outcome.value == "mutated"
    assert "patch" in body["response"]


UNREVIEWABLE = pytest.mark.parametrize(
    "obj",
    [
        {**pv(), "kind": "StorageClass"},
        pv(mountOptions="nfsvers=4.1"),
        {**pv(), "spec": ["nfs"]},
    ],
    ids=["kind-mismatch", "mount-options-string", "spec-list"],
)


@UNREVIEWABLE
def test_handler_refuses_impossible_objects_in_band(obj: dict[str, Any]) -> None:
    """Answered, not an HTTP error: allowed false with code 400, so that no failurePolicy
    (Ignore) admits the object unreviewed."""
    answer = ReviewHandler(lambda: ENGINE).handle(encode(review(obj)))
    response = answer.review["response"]
    assert answer.review["apiVersion"] == "admission.k8s.io/v1"
    assert response["uid"] == "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
    assert response["allowed"] is False
    assert "patch" not in response and "patchType" not in response
    status = response["status"]
    assert status["code"] == 400 and status["reason"] == "BadRequest"
    assert status["message"] == answer.refusal and "\n" not in answer.refusal
    assert answer.decision is None


@UNREVIEWABLE
def test_decide_raises_for_impossible_objects(obj: dict[str, Any]) -> None:
    """``nfsguard review``, ``policy explain`` and ``policy test`` catch this (exit 2)."""
    request = parse_review(encode(review(obj)))
    with pytest.raises(BadRequest) as info:
        decide(ENGINE, request, UnknownInventory("none"))
    assert isinstance(info.value, UnreviewableObject)
    assert info.value.status == 400 and "\n" not in info.value.message


class FailingRecorder(NullRecorder):
    def record(self, request: AdmissionRequest, decision: Decision) -> None:
        raise OSError("disk full")


def test_a_decision_that_cannot_be_recorded_is_unavailable() -> None:
    handler = ReviewHandler(lambda: ENGINE, recorder=FailingRecorder())
    with pytest.raises(Unavailable, match="could not be recorded: disk full") as info:
        handler.handle(encode(review()))  # a pin is recorded
    assert info.value.status == 503
    compliant = handler.handle(encode(review(pv(mountOptions=["nfsvers=4.0"]))))
    assert compliant.decision is not None and not compliant.decision.recorded


def test_the_recorders_are_decision_recorders(tmp_path: Path) -> None:
    """The port is structural: the audit trail's writer satisfies it without importing
    webhook.admission (mypy checks these assignments)."""
    request, decision = parse_review(encode(review())), ENGINE.decide(pv())
    null: DecisionRecorder = NullRecorder()
    null.record(request, decision)
    null.close()
    log = tmp_path / "audit.log"
    audit: DecisionRecorder = open_recorder(str(log))
    audit.record(request, decision)
    audit.close()
    (line,) = log.read_text().splitlines()
    assert json.loads(line)["request"]["uid"] == request.uid


def test_audit_annotations_only_for_deciding_rules() -> None:
    decision = ENGINE.decide(pv(mountOptions=["nfsvers=4.0"]))
    assert audit_annotations(decision) == {}
    decision = ENGINE.decide(pv(mountOptions=["vers=4.2"]))
    annotations = audit_annotations(decision)
    assert annotations == {
        "outcome": "mutated",
        "policy": "site-rules",
        "policy-version": "2026.11.27-1",
        "rule": "incident-node003-hang",
        "version-before": "4.2",
        "version-after": "4.0",
        "enforcement": "Enforce",
    }
