"""How one AdmissionReview is answered: parse, scope, decide, record, respond.

Each step is one function below, in that order. ``evaluate`` hands the engine the
request's oldObject on UPDATE: an update that keeps an existing object's NFS options
is never denied (webhook/engine/verdict.py ``settle``). The same ``evaluate`` (``decide``
is its decision) serves ``nfsguard review``, ``policy test`` and ``policy explain``
(which reads its whole trace), so files and the served webhook always give the
same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

from webhook.admission.errors import Unavailable, UnreviewableObject
from webhook.admission.recorder import DecisionRecorder, NullRecorder
from webhook.admission.review import (
    AdmissionReviewResponse,
    denied,
    errored,
    parse_review,
    patched,
)
from webhook.api.decision import Decision, Outcome
from webhook.api.kube import POD_SPEC_POINTERS, Operation
from webhook.api.review import AdmissionRequest
from webhook.api.target import InvalidObject
from webhook.engine.engine import IGNORED, Engine, Evaluation
from webhook.nfs.inventory import NodeInventory, UnknownInventory

#: Kinds and operations nfsguard reviews; everything else is allowed untouched.
REVIEWED_KINDS = frozenset({"PersistentVolume", "StorageClass", *POD_SPEC_POINTERS})
REVIEWED_OPERATIONS = frozenset({"CREATE", "UPDATE"})


def reviewed_object(request: AdmissionRequest) -> Mapping[str, Any] | None:
    """Scope: the object to review, or None for a request let through untouched (another
    kind or operation, a subresource). Raises UnreviewableObject when the object's kind
    is not the request's (the apiserver always sends the kind it names)."""
    if (
        request.operation not in REVIEWED_OPERATIONS
        or request.kind not in REVIEWED_KINDS
        or request.sub_resource
        or request.object is None
    ):
        return None
    obj = request.object
    kind = obj.get("kind")
    if kind is None:  # tolerate objects sent without TypeMeta
        obj = {**obj, "kind": request.kind}
    elif kind != request.kind:
        raise UnreviewableObject(f"request.kind {request.kind} does not match object kind {kind}")
    return _in_namespace(obj, request.namespace)


def _in_namespace(obj: Mapping[str, Any], namespace: str) -> Mapping[str, Any]:
    """A namespaced object with the request's namespace when it names none itself (the
    apiserver sets it from the URL before admission, but a review may come without):
    a denial's way out names the namespace to apply to."""
    meta = obj.get("metadata")
    if not namespace or not isinstance(meta, Mapping) or meta.get("namespace"):
        return obj
    if obj.get("kind") not in POD_SPEC_POINTERS:
        return obj
    return {**obj, "metadata": {**meta, "namespace": namespace}}


def evaluate(engine: Engine, request: AdmissionRequest, inventory: NodeInventory) -> Evaluation:
    """The engine's whole trace for one request (``policy explain`` reads it). Raises
    UnreviewableObject (a BadRequest) for an object no apiserver sends."""
    obj = reviewed_object(request)
    if obj is None:
        return IGNORED
    operation = cast(Operation, request.operation)  # CREATE or UPDATE: reviewed_object checked
    old = request.old_object if operation == "UPDATE" else None
    if old is not None and old.get("kind") is None:
        old = {**old, "kind": request.kind}
    try:
        return engine.evaluate(obj, operation=operation, inventory=inventory, old_object=old)
    except InvalidObject as exc:
        raise UnreviewableObject(f"{request.kind} {request.display_name or '?'}: {exc}") from None


def decide(engine: Engine, request: AdmissionRequest, inventory: NodeInventory) -> Decision:
    """The decision for one request: ``evaluate(...).decision``."""
    return evaluate(engine, request, inventory).decision


#: Outcomes recorded only with ``serve --audit-compliant``: the object was reviewed
#: and left alone (coverage evidence: proof that a PV was checked).
COVERAGE = frozenset({Outcome.COMPLIANT, Outcome.UNMATCHED})


def record(
    recorder: DecisionRecorder,
    request: AdmissionRequest,
    decision: Decision,
    *,
    coverage: bool = False,
) -> None:
    """Record a decision the audit trail keeps before it is answered (with ``coverage``,
    compliant and unmatched ones too). Raises Unavailable (503: the apiserver applies
    failurePolicy) when it cannot be recorded."""
    if not (decision.recorded or (coverage and decision.outcome in COVERAGE)):
        return
    try:
        recorder.record(request, decision)
    except Exception as exc:  # any failure: never answer as if recorded
        raise Unavailable(f"decision could not be recorded: {exc}") from exc


def audit_annotations(decision: Decision) -> dict[str, str]:
    """Keys land in the apiserver's audit log as ``<webhook name>/<key>``: qualified
    names without '/', at most 63 characters."""
    if decision.deciding is None:
        return {}
    ref = decision.deciding
    out = {
        "outcome": decision.outcome.value,
        "policy": ref.policy,
        "policy-version": ref.policy_version,
        "rule": ref.rule,
    }
    if decision.before is not None and decision.before.version:
        out["version-before"] = decision.before.version
    if decision.after is not None and decision.after.version:
        out["version-after"] = decision.after.version
    if decision.enforcement is not None:
        out["enforcement"] = decision.enforcement.value
    if decision.would_be is not None:
        out["would-be"] = decision.would_be.value
    if decision.existing:
        out["existing"] = "options-unchanged"
    return out


def respond(uid: str, decision: Decision) -> AdmissionReviewResponse:
    """The AdmissionReview answering a decision: denied, or allowed with its patch."""
    annotations = audit_annotations(decision)
    if not decision.allowed:
        return denied(
            uid, decision.message, warnings=decision.warnings, audit_annotations=annotations
        )
    return patched(uid, decision.patch, warnings=decision.warnings, audit_annotations=annotations)


class Answer(NamedTuple):
    """What one AdmissionReview is answered with (HTTP 200), and why."""

    review: AdmissionReviewResponse
    #: The engine's decision; None when the object could not be reviewed.
    decision: Decision | None
    #: Why it could not (the in-band ``status.message``, code 400); "" when decided.
    refusal: str = ""
    #: The request answered (for the server's per-decision log line).
    request: AdmissionRequest | None = None


class ReviewHandler:
    """Answers AdmissionReview bodies. Thread-safe: engines are immutable and
    ``engine()`` returns the one in force (hot reload swaps it)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        inventory: NodeInventory | None = None,
        recorder: DecisionRecorder | None = None,
        record_compliant: bool = False,
    ) -> None:
        self._engine = engine
        self.record_compliant = record_compliant
        self.inventory: NodeInventory = inventory or UnknownInventory("no node inventory")
        self.recorder: DecisionRecorder = recorder or NullRecorder()

    def handle(self, body: bytes) -> Answer:
        """Raises BadRequest (HTTP 400) for a body that is not an AdmissionReview,
        Unavailable (503) for a decision that cannot be recorded; an object that
        cannot be reviewed is refused in band."""
        request = parse_review(body)
        try:
            decision = decide(self._engine(), request, self.inventory)
        except UnreviewableObject as exc:
            return Answer(errored(request.uid, exc.status, exc.message), None, exc.message, request)
        record(self.recorder, request, decision, coverage=self.record_compliant)
        return Answer(respond(request.uid, decision), decision, "", request)
