"""The policy engine: one review of one object, as a trace (``Evaluation``).

``Engine.evaluate`` runs the steps in order, each in its own module:

1. read        webhook/engine/reading.py   the object through its driver profile -> NFSTarget
2. candidates  webhook/engine/index.py     rules filed by what an object can have
3. match       webhook/engine/matching.py  match/exclude, node kernels (NodeInventory port)
4. act         webhook/engine/verdict.py   precedence, action, messages
5. pin         webhook/engine/pin.py       options rewritten -> JSON Patch, checked

and returns everything it saw and concluded. ``decide`` (the webhook),
``policy explain`` (webhook/engine/explain.py) and later ``scan`` all read that
one trace, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.api.decision import Decision, Outcome, Target
from webhook.api.kube import Operation
from webhook.api.patch import PatchOperation
from webhook.api.policy import Policy
from webhook.api.profile import DriverProfile
from webhook.api.target import NFSTarget
from webhook.engine.index import CompiledRule, NamedProvisioners, RuleIndex, compile_rules
from webhook.engine.matching import matching
from webhook.engine.profiles import DriverProfiles
from webhook.engine.reading import read_target
from webhook.engine.verdict import act, deciding_rule, precedence_reason
from webhook.nfs.inventory import NodeInventory, UnknownInventory
from webhook.nfs.options import EffectiveVersion
from webhook.nfs.patterns import parse_ip

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
            return "not an NFS object in scope"
        if self.effective is not None and not self.effective.affected:
            return "the effective version is safe: the object is compliant and no rule acts"
        if self.deciding is None:
            return "no rule matches: nfsguard leaves the object alone"
        return precedence_reason(self.matched, self.deciding)


#: The trace of an object nfsguard does not review (out of scope, or a kind or
#: operation it leaves alone): frozen, so one serves every such review.
IGNORED = Evaluation(None, (), None, Decision(Outcome.IGNORED))


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
    ) -> Evaluation:
        """Review ``obj`` (a PV or StorageClass as the apiserver sends it) and return the
        whole trace. Pure: ``obj`` is not modified. Raises InvalidObject."""
        target = read_target(obj, self.provisioners, self.profiles)
        if target is None:
            return IGNORED
        ev = target.effective_version()
        server_ip = parse_ip(target.server) if target.server else None
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
        )
        if not ev.affected or not matched:
            outcome = Outcome.UNMATCHED if ev.affected else Outcome.COMPLIANT
            decision = Decision(
                outcome, target=summary, matched=refs, before=ev, after=ev, nodes=nodes
            )
            return Evaluation(target, matched, None, decision)
        deciding = deciding_rule(matched)
        verdict = act(deciding, target, ev, operation)
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
        )
        return Evaluation(target, matched, deciding, decision)

    def decide(
        self,
        obj: Mapping[str, Any],
        *,
        operation: Operation = "CREATE",
        inventory: NodeInventory = _NO_INVENTORY,
    ) -> Decision:
        """The decision alone: ``evaluate(...).decision``."""
        return self.evaluate(obj, operation=operation, inventory=inventory).decision
