"""AdmissionReview v1, as kube-apiserver sends it and verifies the answer.

``parse_review`` reads a body into the typed :class:`~webhook.api.review.AdmissionRequest`
(only the fields nfsguard reads; the raw object kept as given, so that patches are built
against exactly what the apiserver will apply them to). The answer helpers are those of
controller-runtime's webhook package (``Allowed``, ``Patched``, ``Denied``, ``Errored``),
each returning an :class:`AdmissionReviewResponse` that VerifyAdmissionResponse accepts:
the uid echoed, apiVersion and kind of the request, ``patch`` and ``patchType`` together
or not at all. See staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/request/
admissionreview.go. The body's size is the transport's (webhook.server.http), checked
before it gets here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

import orjson

from webhook.admission.errors import BadRequest
from webhook.api.review import AdmissionRequest, UserInfo

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"


_TYPE_NAMES: Final = {str: "a string", dict: "an object", bool: "a boolean", list: "a list"}


def _wrong(where: str, key: str, kind: type) -> BadRequest:
    return BadRequest(f"{where}.{key} must be {_TYPE_NAMES[kind]}")


def _need(mapping: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind):
        raise _wrong(where, key, kind)
    return value


def _optional(mapping: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = mapping.get(key)  # one lookup: about a dozen fields per review
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _wrong(where, key, kind)
    return value


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
            groups=tuple(map(str, groups)),
        ),
        dry_run=bool(_optional(request, "dryRun", bool, "request", False)),
    )


class ResponseStatus(TypedDict):
    """The metav1.Status of a refusal (``AdmissionResponse.Result``, JSON ``status``).
    The apiserver raises a code below 400 to 400 and prefixes the message with
    ``admission webhook "<name>" denied the request:`` (webhook/errors ToStatusErr)."""

    code: int
    reason: NotRequired[str]  # a metav1.StatusReason: what kubectl shows in parentheses
    message: str


class AdmissionResponse(TypedDict):
    """The ``response`` of an AdmissionReview v1, the fields nfsguard sends."""

    uid: str
    allowed: bool
    status: NotRequired[ResponseStatus]
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]  # base64 of the JSON patch
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class AdmissionReviewResponse(TypedDict):
    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


#: metav1.StatusReason for the codes nfsguard refuses with (apimachinery types.go).
_STATUS_REASONS: Final = {400: "BadRequest", 403: "Forbidden", 500: "InternalError"}


def _review(
    response: AdmissionResponse,
    warnings: Sequence[str],
    audit_annotations: Mapping[str, str] | None,
) -> AdmissionReviewResponse:
    if warnings:
        response["warnings"] = list(warnings)
    if audit_annotations:
        response["auditAnnotations"] = dict(audit_annotations)
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def allowed(
    uid: str,
    *,
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
) -> AdmissionReviewResponse:
    """Admit the object unchanged."""
    return _review({"uid": uid, "allowed": True}, warnings, audit_annotations)


def patched(
    uid: str,
    patch: Sequence[Mapping[str, Any]],
    *,
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
) -> AdmissionReviewResponse:
    """Admit the object with ``patch`` applied (RFC 6902); no operations is :func:`allowed`."""
    if not patch:
        return allowed(uid, warnings=warnings, audit_annotations=audit_annotations)
    response: AdmissionResponse = {
        "uid": uid,
        "allowed": True,
        "patchType": "JSONPatch",
        "patch": base64.b64encode(orjson.dumps(list(patch))).decode(),
    }
    return _review(response, warnings, audit_annotations)


def denied(
    uid: str,
    message: str,
    *,
    code: int = 403,
    warnings: Sequence[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
) -> AdmissionReviewResponse:
    """Refuse the object by policy: ``Forbidden``, the code at least 400."""
    status: ResponseStatus = {"code": max(code, 400), "reason": "Forbidden", "message": message}
    return _review({"uid": uid, "allowed": False, "status": status}, warnings, audit_annotations)


def errored(uid: str, code: int, message: str) -> AdmissionReviewResponse:
    """Refuse a review that could not be carried out (an object that cannot be reviewed:
    400), in band, so that failurePolicy does not apply; the message on one line."""
    status: ResponseStatus = {"code": code, "message": message.replace("\n", " ")}
    if code in _STATUS_REASONS:
        status["reason"] = _STATUS_REASONS[code]
    return _review({"uid": uid, "allowed": False, "status": status}, (), None)
