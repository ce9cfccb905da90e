"""The policy engine: one review of one object, as a trace (``Evaluation``).

``Engine.evaluate`` runs the steps in order, each in its own module:

1. read        webhook/engine/reading.py   the object through its driver profile -> NFSTarget
2. candidates  webhook/engine/index.py     rules filed by what an object can have
3. match       webhook/engine/matching.py  match/exclude, node kernels (NodeInventory port)
4. act         webhook/engine/verdict.py   precedence, action, messages
5. pin         webhook/engine/pin.py       options rewritten -> JSON Patch, checked
6. settle      webhook/engine/verdict.py   existing objects (oldObject), Audit enforcement

An object being deleted (``metadata.deletionTimestamp`` set) is never read: it is
allowed untouched and not recorded, as if the webhook had not been called (the
registered matchConditions may keep it from being sent at all; a webhook must never
deny or mutate it, or its finalizers can never be removed: docs/policy-authoring.md).

and returns everything it saw and concluded. ``decide`` (the webhook),
``policy explain`` (webhook/engine/explain.py) and later ``scan`` all read that
one trace, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.api.decision import Decision, Outcome, Target
from webhook.api.kube import JSON_OBJECT, Operation
from webhook.api.patch import PatchOperation
from webhook.api.policy import Policy
from webhook.api.profile import DriverProfile
from webhook.api.target import InvalidObject, NFSTarget
from webhook.engine.index import CompiledRule, NamedProvisioners, RuleIndex, compile_rules
from webhook.engine.matching import matching
from webhook.engine.pod_decision import combine_decisions
from webhook.engine.pod_volumes import pod_bearing, volume_targets
from webhook.engine.profiles import DriverProfiles
from webhook.engine.reading import metadata_of, read_target
from webhook.engine.verdict import act, deciding_rule, precedence_reason, settle
from webhook.nfs.inventory import NodeInventory, UnknownInventory
from webhook.nfs.options import EffectiveVersion
from webhook.nfs.patterns import server_address

_NO_INVENTORY = UnknownInventory("no node inventory")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The whole trace of one review: what was read, which rules matched and which
    decided, and the ``Decision`` (outcome, messages, patch, versions before/after).

    ``target`` is None when the object is out of scope (then ``decision`` is
    ``ignored`` and nothing else is set). ``matched`` holds every rule whose match
    holds and exclude does not, in load order; ``deciding`` the one that decides
    (None when none matched, or when the effective version is safe and no rule acts).
    The rest is read from ``decision``, so the trace and the answer are one.
    """

    target: NFSTarget | None
    matched: tuple[CompiledRule, ...]
    deciding: CompiledRule | None
    decision: Decision
    #: Why nothing was read, when ``target`` is None ("" for an object out of scope).
    skipped: str = ""
    #: A Pod or workload: the trace of each inline NFS volume, in ``spec.volumes``
    #: order; ``target``, ``deciding`` and the versions are those of the most severe
    #: (webhook/engine/pod_decision.py), ``matched`` every volume's, ``decision`` the
    #: object's. Empty for a PV or StorageClass.
    volumes: tuple[Evaluation, ...] = ()

    @property
    def effective(self) -> EffectiveVersion | None:
        """The version the node would mount with as the object stands."""
        return self.decision.before

    @property
    def nodes(self) -> str:
        """How node kernels were known ("" when no matched rule asked)."""
        return self.decision.nodes

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def patch(self) -> tuple[PatchOperation, ...]:
        return self.decision.patch

    @property
    def reason(self) -> str:
        """Why the outcome: out of scope, safe, no rule, or why the deciding rule won."""
        if self.target is None:
            return self.skipped or "not an NFS object in scope"
        if self.volumes:
            return "; ".join(
                f"volume {v.target.volume}: {v.reason}" for v in self.volumes if v.target
            )
        existing = "existing object: options unchanged; " if self.decision.existing else ""
        if self.effective is not None and not self.effective.affected:
            return "the effective version is safe: the object is compliant and no rule acts"
        if self.deciding is None:
            return "no rule matches: nfsguard leaves the object alone"
        return existing + precedence_reason(self.matched, self.deciding)


#: The trace of an object nfsguard does not review (out of scope, or a kind or
#: operation it leaves alone): frozen, so one serves every such review.
IGNORED = Evaluation(None, (), None, Decision(Outcome.IGNORED))
#: A Pod or workload that names no inline NFS volume (its PVCs are reviewed as PVs).
NO_INLINE_NFS = Evaluation(
    None,
    (),
    None,
    Decision(Outcome.IGNORED),
    "no inline NFS volume in its pod spec (volumes from PVCs are reviewed as their PVs)",
)
#: The trace of an object being deleted: allowed untouched, unrecorded.
DELETING = Evaluation(
    None,
    (),
    None,
    Decision(Outcome.IGNORED),
    "being deleted (metadata.deletionTimestamp is set): allowed untouched",
)


def being_deleted(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` carries ``metadata.deletionTimestamp`` (deletion has begun; only
    finalizer removals and status updates follow, apiserver registry/rest/delete.go)."""
    meta = obj.get("metadata")
    return isinstance(meta, JSON_OBJECT) and bool(meta.get("deletionTimestamp"))


class Engine:
    """All loaded policies, compiled and indexed. Immutable: hot reload swaps engines."""

    def __init__(
        self,
        policies: Sequence[Policy],
        profiles: DriverProfiles | Iterable[DriverProfile],
    ) -> None:
        self.policies = tuple(policies)
        #: NFS driver profiles in the order they are tried, loaded at the composition root
        #: (webhook.files.packaged's built-ins with the operator's, config.load's ``profiles``).
        if not isinstance(profiles, DriverProfiles):
            profiles = DriverProfiles(profiles)
        self.profiles = profiles
        self.rules = compile_rules(self.policies)
        self._index = RuleIndex(self.rules)
        self.provisioners = NamedProvisioners(self.rules)

    def read(self, obj: Mapping[str, Any]) -> NFSTarget | None:
        """The object's NFS target, or None when it is out of scope. Raises InvalidObject."""
        return read_target(obj, self.provisioners, self.profiles)

    def evaluate(
        self,
        obj: Mapping[str, Any],
        *,
        operation: Operation = "CREATE",
        inventory: NodeInventory = _NO_INVENTORY,
        old_object: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """Review ``obj`` (a PV or StorageClass as the apiserver sends it) and return the
        whole trace. ``old_object`` is the request's oldObject (UPDATE): when the NFS options
        the node would mount with are the same on both, the object is an existing one
        and is never denied (``settle``). Pure: neither is modified. Raises InvalidObject."""
        if isinstance(obj, JSON_OBJECT) and being_deleted(obj):
            return DELETING
        if isinstance(obj, JSON_OBJECT) and pod_bearing(obj.get("kind")):
            return self._evaluate_pod(obj, operation, inventory, old_object)
        target = read_target(obj, self.provisioners, self.profiles)
        if target is None:
            return IGNORED

        def existing() -> bool:
            return (
                operation == "UPDATE"
                and old_object is not None
                and self._unchanged(target, old_object)
            )

        return self._evaluate_target(target, operation, inventory, existing)

    def _evaluate_target(
        self,
        target: NFSTarget,
        operation: Operation,
        inventory: NodeInventory,
        existing: Callable[[], bool],
    ) -> Evaluation:
        """The trace for one target read (a PV, a StorageClass, or one pod volume);
        ``existing`` says whether the request keeps the options of its oldObject (asked
        only when a rule acts)."""
        ev = target.effective_version()
        server_ip = server_address(target.server) if target.server else None
        found, nodes = matching(
            self._index.candidates(target, server_ip), target, server_ip, inventory
        )
        matched = tuple(found)
        refs = tuple([c.ref for c in matched])  # a list comprehension: faster than a generator
        summary = Target(
            target.kind,
            target.name,
            target.driver,
            target.server,
            target.path,
            target.storage_class,
            target.volume or None,
        )
        if not ev.affected or not matched:
            outcome = Outcome.UNMATCHED if ev.affected else Outcome.COMPLIANT
            decision = Decision(
                outcome, target=summary, matched=refs, before=ev, after=ev, nodes=nodes
            )
            return Evaluation(target, matched, None, decision)
        deciding = deciding_rule(matched)
        verdict = settle(
            act(deciding, target, ev, operation), deciding, target, existing=existing()
        )
        decision = Decision(
            verdict.outcome,
            target=summary,
            deciding=deciding.ref,
            matched=refs,
            before=ev,
            after=verdict.after or ev,
            patch=verdict.patch,
            message=verdict.message,
            warnings=verdict.warnings,
            nodes=nodes,
            notes=verdict.notes,
            enforcement=verdict.enforcement,
            would_be=verdict.would_be,
            would_patch=verdict.would_patch,
            existing=verdict.existing,
        )
        return Evaluation(target, matched, deciding, decision)

    def _evaluate_pod(
        self,
        obj: Mapping[str, Any],
        operation: Operation,
        inventory: NodeInventory,
        old_object: Mapping[str, Any] | None,
    ) -> Evaluation:
        """A Pod or workload: each inline NFS volume judged as its own target, then one
        decision for the object (webhook/engine/pod_decision.py)."""
        name, labels, _ = metadata_of(obj)
        targets = volume_targets(obj, name, labels, self.profiles)
        if not targets:
            return NO_INLINE_NFS
        old_volumes: dict[str, NFSTarget] | None = None

        def existing_for(target: NFSTarget) -> Callable[[], bool]:
            def existing() -> bool:
                nonlocal old_volumes
                if operation != "UPDATE" or old_object is None:
                    return False
                if old_volumes is None:
                    old_volumes = self._old_volumes(old_object)
                before = old_volumes.get(target.volume)
                return (
                    before is not None
                    and before.driver == target.driver
                    and (before.server, before.path) == (target.server, target.path)
                    and _options_of(before) == _options_of(target)
                )

            return existing

        parts = []
        for t in targets:
            existing = existing_for(t)
            if operation == "UPDATE" and existing():
                # A volume the UPDATE keeps is never rewritten (a controller's scale or
                # annotation must not change a template: a rollout would follow).
                t = dataclasses.replace(
                    t, places=tuple(dataclasses.replace(p, mutable=False) for p in t.places)
                )
            parts.append(self._evaluate_target(t, operation, inventory, existing))
        primary, decision = combine_decisions([p.decision for p in parts])
        matched: dict[int, CompiledRule] = {}
        for part in parts:
            for c in part.matched:
                matched.setdefault(id(c), c)
        return Evaluation(
            parts[primary].target,
            tuple(sorted(matched.values(), key=lambda c: c.order)),
            parts[primary].deciding,
            decision,
            volumes=tuple(parts),
        )

    def _old_volumes(self, old: Mapping[str, Any]) -> dict[str, NFSTarget]:
        """The oldObject's inline NFS volumes by name ({} when it cannot be read)."""
        try:
            name, labels, _ = metadata_of(old)
            return {t.volume: t for t in volume_targets(old, name, labels, self.profiles)}
        except InvalidObject:
            return {}

    def _unchanged(self, target: NFSTarget, old: Mapping[str, Any]) -> bool:
        """Whether ``old`` (the oldObject) has the NFS options ``target`` has: every
        option place's entries, read through the same driver profile, and so the
        options the node would mount with. Binding (``claimRef``), finalizers, labels
        and other annotations do not count; an oldObject that cannot be read counts
        as a change (the update is judged as a new object would be)."""
        try:
            before = read_target(old, self.provisioners, self.profiles)
        except InvalidObject:
            return False
        if before is None or before.driver != target.driver:
            return False
        return _options_of(before) == _options_of(target)

    def decide(
        self,
        obj: Mapping[str, Any],
        *,
        operation: Operation = "CREATE",
        inventory: NodeInventory = _NO_INVENTORY,
        old_object: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The decision alone: ``evaluate(...).decision``."""
        return self.evaluate(
            obj, operation=operation, inventory=inventory, old_object=old_object
        ).decision


def _options_of(target: NFSTarget) -> tuple[object, ...]:
    """What an UPDATE must keep to leave the NFS options alone: each place's entries
    (present or not) and the options the node mounts with."""
    places = tuple((p.label, p.present, p.entries) for p in target.places)
    return (places, tuple(target.node_options()))
