"""What the engine concluded about one object, as plain frozen data.

A ``Decision`` is everything the wire layer, ``nfsguard review``/``explain`` and
the audit trail need: who decided (policy, version, digest, rule), what was
seen and what will be mounted (``EffectiveVersion`` before/after, from
webhook.nfs.options), and the JSON patch that gets there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from webhook.api.kube import ObjectKind
from webhook.api.patch import PatchOperation
from webhook.nfs.options import EffectiveVersion


class Action(StrEnum):
    """Rule actions; ``precedence`` orders them (lower wins)."""

    EXEMPT = "exempt"
    DENY = "deny"
    PIN = "pin"
    WARN = "warn"
    AUDIT = "audit"

    @property
    def precedence(self) -> int:
        return _PRECEDENCE[self]


_PRECEDENCE = {Action.EXEMPT: 0, Action.DENY: 1, Action.PIN: 2, Action.WARN: 3, Action.AUDIT: 4}


class Enforcement(StrEnum):
    """What the deciding rule's pin or denial does (``spec.enforcement``, a rule's
    ``enforcement``): ``Enforce`` applies it; ``Audit`` admits the object unchanged
    with a warning and records what Enforce would have done, so a policy can run for
    a while before it changes anything (Kyverno's ``validationFailureAction: Audit``,
    Gatekeeper's ``enforcementAction: warn``)."""

    ENFORCE = "Enforce"
    AUDIT = "Audit"


class Outcome(StrEnum):
    """What happened to the object.

    The first five come from a deciding rule and are recorded in the audit
    trail; ``compliant`` (already safe) and ``unmatched`` (in scope, no rule)
    are answered but not recorded; ``ignored`` objects are out of scope.
    """

    MUTATED = "mutated"
    DENIED = "denied"
    WARNED = "warned"
    AUDITED = "audited"
    EXEMPT = "exempt"
    COMPLIANT = "compliant"
    UNMATCHED = "unmatched"
    IGNORED = "ignored"

    @property
    def recorded(self) -> bool:
        return self in _RECORDED


_RECORDED = frozenset(
    {Outcome.MUTATED, Outcome.DENIED, Outcome.WARNED, Outcome.AUDITED, Outcome.EXEMPT}
)


@dataclass(frozen=True)
class RuleRef:
    """A rule, named the way auditors need it: by policy, version and content digest."""

    policy: str
    policy_version: str
    policy_digest: str
    rule: str
    action: Action

    def to_dict(self) -> dict[str, str]:
        return {
            "policy": self.policy,
            "policyVersion": self.policy_version,
            "policyDigest": self.policy_digest,
            "rule": self.rule,
            "action": self.action.value,
        }


@dataclass(frozen=True)
class Target:
    """Summary of the NFS target an object points at (for messages and records)."""

    kind: ObjectKind
    name: str
    driver: str
    server: str | None
    path: str | None
    storage_class: str | None = None
    #: The pod volume (``spec.volumes[].name``) a Pod's or workload's decision is about.
    volume: str | None = None

    @property
    def export(self) -> str | None:
        if self.server is None:
            return None
        return f"{self.server}:{self.path}" if self.path else self.server


@dataclass(frozen=True)
class VolumeDecision:
    """What happened to one inline NFS volume of a Pod or workload (a decision on the
    object holds one per volume read; the most severe of them is the object's)."""

    volume: str
    outcome: Outcome
    export: str | None
    driver: str
    rule: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "name": self.volume,
            "outcome": self.outcome.value,
            "export": self.export,
            "driver": self.driver,
            "rule": self.rule,
        }


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    target: Target | None = None
    deciding: RuleRef | None = None
    matched: tuple[RuleRef, ...] = ()
    before: EffectiveVersion | None = None
    after: EffectiveVersion | None = None
    patch: tuple[PatchOperation, ...] = ()
    message: str = ""
    warnings: tuple[str, ...] = ()
    nodes: str = ""  # how node kernels were known ("" when no rule needed them)
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: The deciding rule's enforcement (None when no rule decided).
    enforcement: Enforcement | None = None
    #: Audit enforcement: what Enforce would have done (``mutated`` or ``denied``) and
    #: the patch it would have sent; None and () when the decision is what happened.
    would_be: Outcome | None = None
    would_patch: tuple[PatchOperation, ...] = ()
    #: An UPDATE whose NFS options are those of its oldObject: never denied (an
    #: existing violation is allowed with a warning, so it can still be bound and deleted).
    existing: bool = False
    #: Pods and workloads: one entry per inline NFS volume, in ``spec.volumes`` order.
    volumes: tuple[VolumeDecision, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.outcome is not Outcome.DENIED

    @property
    def recorded(self) -> bool:
        return self.outcome.recorded
