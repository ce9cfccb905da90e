"""AdmissionReview v1, as kube-apiserver sends and verifies it.

Only the fields nfsguard reads are typed; the raw object is kept as given so
that patches are built against exactly what the apiserver will apply them to.
See staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/request/admissionreview.go.
The body's size is the transport's (webhook.server.http), checked before it gets here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from webhook.admission.errors import BadRequest
from webhook.api.review import AdmissionRequest, UserInfo

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


def _need(mapping: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind):
        name = {str: "a string", dict: "an object", bool: "a boolean", list: "a list"}[kind]
        raise BadRequest(f"{where}.{key} must be {name}")
    return value


def _optional(mapping: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    if mapping.get(key) is None:
        return default
    return _need(mapping, key, kind, where)


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview v1 body. Raises BadRequest with a one-line reason."""
    try:
        review = orjson.loads(body)  # strict RFC 8259: no NaN, valid UTF-8, depth <= 1024
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise BadRequest("request body is nested too deeply") from None
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(review, dict):
        raise BadRequest("request body must be a JSON object (an AdmissionReview)")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise BadRequest(
            f"expected apiVersion {API_VERSION} kind {KIND}, "
            f"got {review.get('apiVersion')!r} {review.get('kind')!r}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadRequest("AdmissionReview has no request object")
    uid = _need(request, "uid", str, "request")
    if not uid:
        raise BadRequest("request.uid must not be empty")
    kind = _need(request, "kind", dict, "request")
    kind_name = _need(kind, "kind", str, "request.kind")
    resource = _optional(request, "resource", dict, "request", {})
    operation = _need(request, "operation", str, "request")
    obj = request.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise BadRequest("request.object must be an object")
    if obj is None and operation in ("CREATE", "UPDATE"):
        raise BadRequest(f"request.object is required for {operation}")
    old = request.get("oldObject")
    if old is not None and not isinstance(old, dict):
        raise BadRequest("request.oldObject must be an object")
    user = _optional(request, "userInfo", dict, "request", {})
    groups = _optional(user, "groups", list, "request.userInfo", [])
    return AdmissionRequest(
        uid=uid,
        kind=kind_name,
        resource=str(resource.get("resource", "")),
        operation=operation,
        name=_optional(request, "name", str, "request", ""),
        object=obj,
        old_object=old,
        sub_resource=_optional(request, "subResource", str, "request", ""),
        namespace=_optional(request, "namespace", str, "request", ""),
        user=UserInfo(
            username=_optional(user, "username", str, "request.userInfo", ""),
            uid=_optional(user, "uid", str, "request.userInfo", ""),
            groups=tuple(str(g) for g in groups),
        ),
        dry_run=bool(_optional(request, "dryRun", bool, "request", False)),
    )


def review_response(
    uid: str,
    *,
    allowed: bool = True,
    patch: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...] = (),
    message: str = "",
    code: int = 403,
    warnings: tuple[str, ...] = (),
    audit_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 response the apiserver accepts (VerifyAdmissionResponse):
    the uid echoed, ``patchType`` JSONPatch with a base64 patch, status on denial."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": max(code, 400), "reason": "Forbidden", "message": message}
    elif patch:
        encoded = orjson.dumps(list(patch))
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(encoded).decode()
    if warnings:
        response["warnings"] = list(warnings)
    if audit_annotations:
        response["auditAnnotations"] = dict(audit_annotations)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}
