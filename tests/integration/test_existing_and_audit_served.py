"""The handler path for oldObject, deletionTimestamp and Audit enforcement, served by a real
``nfsguard serve`` (gunicorn over TLS), answered as kube-apiserver verifies it, recorded in
the server's own audit log."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.samples import pv
from tests.integration.conftest import ServerHandle, start_server
from tests.integration.test_server import applied, assert_pinned, review_of

ENFORCE = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: served-enforce}
spec:
  version: "1"
  rules:
  - name: deny-old
    match: {exports: [{server: 192.0.2.40}]}
    action: deny
  - name: pin-old
    match: {exports: [{server: 192.0.2.41}]}
    action: pin
"""
AUDIT = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: served-audit}
spec:
  version: "1"
  enforcement: Audit
  rules:
  - name: deny-audit
    match: {exports: [{server: 192.0.2.50}]}
    action: deny
  - name: pin-audit
    match: {exports: [{server: 192.0.2.51}]}
    action: pin
  - name: pin-enforced
    match: {exports: [{server: 192.0.2.52}]}
    action: pin
    enforcement: Enforce
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerHandle]:
    policies = tmp_path_factory.mktemp("policies")
    (policies / "10-enforce.yaml").write_text(ENFORCE)
    (policies / "20-audit.yaml").write_text(AUDIT)
    handle = start_server([policies], tmp_path_factory.mktemp("nfsguard"))
    try:
        yield handle
    finally:
        handle.stop()


def records(server: ServerHandle, uid: str) -> list[dict[str, Any]]:
    lines = server.audit_records()
    return [r for r in lines if r.get("type") == "decision" and r["request"]["uid"] == uid]


def changed(obj: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    change(new)
    return new


def bind(o: dict[str, Any]) -> None:
    o["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": "a", "name": "c"}


def drop_finalizers(o: dict[str, Any]) -> None:
    o["metadata"]["finalizers"] = []


def test_update_of_an_existing_violation_is_allowed_recorded_and_warned(
    server: ServerHandle,
) -> None:
    old = pv("pv-old", server="192.0.2.40", path="/x", mount_options=["hard"])
    review, response = review_of(server, changed(old, bind), operation="UPDATE", old=old)
    assert response["allowed"] is True and "patch" not in response
    (warning,) = response["warnings"]
    assert warning.startswith("set nfsvers=4.0 in mountOptions (allowed: options unchanged)")
    assert "PersistentVolume/pv-old" in warning
    assert response["auditAnnotations"]["existing"] == "options-unchanged"
    (record,) = records(server, review["request"]["uid"])
    assert record["outcome"] == "warned" and record["existing"] is True
    assert record["rule"] == "deny-old"


def test_update_that_asks_for_4_2_is_denied(server: ServerHandle) -> None:
    old = pv("pv-old", server="192.0.2.40", path="/x", mount_options=["hard"])
    new = pv("pv-old", server="192.0.2.40", path="/x", mount_options=["hard", "nfsvers=4.2"])
    _, response = review_of(server, new, operation="UPDATE", old=old)
    assert response["allowed"] is False
    assert 'rule "deny-old"' in response["status"]["message"]


def test_existing_pin_is_still_written(server: ServerHandle) -> None:
    old = pv("pv-pin", server="192.0.2.41", path="/x", mount_options=["hard"])
    new = changed(old, bind)
    _, response = review_of(server, new, operation="UPDATE", old=old)
    assert response["allowed"] is True
    assert_pinned(applied(new, response))


def test_an_object_being_deleted_is_allowed_untouched_and_not_recorded(
    server: ServerHandle,
) -> None:
    old = pv("pv-gone", server="192.0.2.40", path="/x")
    old["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    old["metadata"]["finalizers"] = ["kubernetes.io/pv-protection"]
    new = changed(old, drop_finalizers)
    new["spec"]["mountOptions"] = ["nfsvers=4.2"]  # even this: deletion has begun
    review, response = review_of(server, new, operation="UPDATE", old=old)
    assert response == {"uid": review["request"]["uid"], "allowed": True}
    assert records(server, review["request"]["uid"]) == []


@pytest.mark.parametrize(
    ("server_ip", "would", "would_patch"),
    [
        ("192.0.2.50", "denied", []),
        (
            "192.0.2.51",
            "mutated",
            [{"op": "add", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]}],
        ),
    ],
)
def test_audit_admits_unchanged_with_a_warning_and_records_what_enforce_would_do(
    server: ServerHandle, server_ip: str, would: str, would_patch: list[dict[str, Any]]
) -> None:
    obj = pv("pv-audit", server=server_ip, path="/x")
    review, response = review_of(server, obj)
    assert response["allowed"] is True and "patch" not in response
    (warning,) = response["warnings"]
    assert "(audit: would " in warning and "PersistentVolume/pv-audit" in warning
    annotations = response["auditAnnotations"]
    assert annotations["outcome"] == "warned" and annotations["enforcement"] == "Audit"
    assert annotations["would-be"] == would
    (record,) = records(server, review["request"]["uid"])
    assert record["outcome"] == "warned" and record["wouldBe"] == would
    assert record["enforcement"] == "Audit" and record["wouldPatch"] == would_patch
    assert record["patch"] == []


def test_a_rule_that_enforces_in_an_audit_policy_pins(server: ServerHandle) -> None:
    obj = pv("pv-enforced", server="192.0.2.52", path="/x")
    _, response = review_of(server, obj)
    assert response["auditAnnotations"]["enforcement"] == "Enforce"
    assert_pinned(applied(obj, response))
