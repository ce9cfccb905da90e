"""How one AdmissionReview is answered: parse, decide, record, respond.

The same ``decide`` serves ``nfsguard review`` and ``policy explain``, so files
and the served webhook always give the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from webhook.admission.errors import BadRequest, Unavailable
from webhook.admission.recorder import DecisionRecorder, NullRecorder
from webhook.admission.review import parse_review, review_response
from webhook.api.decision import Decision, Outcome
from webhook.api.review import AdmissionRequest
from webhook.engine.engine import Engine
from webhook.engine.reading import InvalidObject
from webhook.nfs.inventory import NodeInventory, UnknownInventory

#: Kinds and operations nfsguard reviews; everything else is allowed untouched.
REVIEWED_KINDS = frozenset({"PersistentVolume", "StorageClass"})
REVIEWED_OPERATIONS = frozenset({"CREATE", "UPDATE"})


def decide(engine: Engine, request: AdmissionRequest, inventory: NodeInventory) -> Decision:
    """The decision for one request. Raises BadRequest for an object no apiserver sends."""
    if (
        request.operation not in REVIEWED_OPERATIONS
        or request.kind not in REVIEWED_KINDS
        or request.sub_resource
        or request.object is None
    ):
        return Decision(Outcome.IGNORED)
    obj: Mapping[str, Any] = request.object
    if obj.get("kind") is None:  # tolerate objects sent without TypeMeta
        obj = {**obj, "kind": request.kind}
    elif obj.get("kind") != request.kind:
        raise BadRequest(
            f"request.kind {request.kind} does not match object kind {obj.get('kind')}"
        )
    try:
        return engine.decide(obj, operation=request.operation, inventory=inventory)
    except InvalidObject as exc:
        raise BadRequest(f"{request.kind} {request.display_name or '?'}: {exc}") from None


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
    return out


class ReviewHandler:
    """Answers AdmissionReview bodies. Thread-safe: engines are immutable and
    ``engine()`` returns the one in force (hot reload swaps it)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        inventory: NodeInventory | None = None,
        recorder: DecisionRecorder | None = None,
    ) -> None:
        self._engine = engine
        self.inventory: NodeInventory = inventory or UnknownInventory("no node inventory")
        self.recorder: DecisionRecorder = recorder or NullRecorder()

    def handle(self, body: bytes) -> tuple[dict[str, Any], Decision]:
        request = parse_review(body)
        decision = decide(self._engine(), request, self.inventory)
        if decision.recorded:
            try:
                self.recorder.record(request, decision)
            except Exception as exc:  # any failure: never answer as if recorded
                raise Unavailable(f"decision could not be recorded: {exc}") from exc
        response = review_response(
            request.uid,
            allowed=decision.allowed,
            patch=decision.patch,
            message=decision.message,
            warnings=decision.warnings,
            audit_annotations=audit_annotations(decision),
        )
        return response, decision
