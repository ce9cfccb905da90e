"""The policy engine: which rules match an object, which one decides, and what it does.

Evaluation is indexed by what the object has (server, provisioner, StorageClass
name), so rules about other exports cost nothing: a 10,000-rule policy decides
as fast as a 10-rule one for an object that only a few rules can match.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from webhook.api.decision import Action, Decision, Outcome, RuleRef, Target
from webhook.api.policy import (
    Match,
    OnExplicit,
    OnUnsupportedPin,
    Policy,
    Rule,
    UnknownNodes,
)
from webhook.api.profile import DriverProfile
from webhook.api.target import NFSTarget, OptionPlace
from webhook.config.profiles import builtin_profiles
from webhook.engine.profiles import DriverProfiles
from webhook.engine.reading import read_target
from webhook.nfs.inventory import KernelView, NodeInventory, UnknownInventory
from webhook.nfs.options import (
    EffectiveVersion,
    VersionKind,
    effective_version,
    is_version_option,
    pin_entries,
    pin_option,
    selected_version,
    strip_entries,
)
from webhook.nfs.patterns import IPAddress, NamePattern, parse_ip

_NO_INVENTORY = UnknownInventory("no node inventory")
_MAX_WARNING = 119  # kubectl shows warnings whole under 120 characters


@dataclass(frozen=True)
class CompiledRule:
    order: int  # load order: policy file name order, then rule order
    policy: Policy
    rule: Rule
    ref: RuleRef
    #: (action precedence, load order): the lowest decides.
    rank: tuple[int, int]
    #: How messages name the rule: 'rule "r" (policy p version v)'.
    who: str

    @classmethod
    def of(cls, order: int, policy: Policy, rule: Rule) -> CompiledRule:
        who = f'rule "{rule.name}" (policy {policy.name} version {policy.version})'
        return cls(order, policy, rule, policy.ref(rule), (rule.action.precedence, order), who)


def _rank(c: CompiledRule) -> tuple[int, int]:
    return c.rank


class _Provisioners:
    """Provisioners and CSI drivers named by rules: they bring objects into scope."""

    def __init__(self, patterns: Iterable[NamePattern]) -> None:
        patterns = tuple(patterns)  # read twice below: a generator would leave no globs
        self._exact = frozenset(p.text for p in patterns if p.glob is None)
        self._globs = tuple(p for p in patterns if p.glob is not None)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._exact or any(p.matches(name) for p in self._globs)


class _Index:
    """Candidate rules per object attribute; each rule is filed under the most
    selective key of its ``match`` (exports, then provisioners, then StorageClass
    names), or under ``always`` when it has none of them."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.by_ip: dict[IPAddress, list[CompiledRule]] = defaultdict(list)
        self.by_host: dict[str, list[CompiledRule]] = defaultdict(list)
        self.by_net: dict[tuple[int, int], dict[int, list[CompiledRule]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.server_globs: list[CompiledRule] = []
        self.by_provisioner: dict[str, list[CompiledRule]] = defaultdict(list)
        self.provisioner_globs: list[CompiledRule] = []
        self.by_storage_class: dict[str, list[CompiledRule]] = defaultdict(list)
        self.always: list[CompiledRule] = []
        for compiled in rules:
            self._file(compiled)

    def _file(self, compiled: CompiledRule) -> None:
        match = compiled.rule.match
        if match.exports:
            for export in match.exports:
                server = export.server
                if server.ip is not None:
                    self.by_ip[server.ip].append(compiled)
                elif server.network is not None:
                    net = server.network
                    key = (net.version, net.prefixlen)
                    self.by_net[key][int(net.network_address)].append(compiled)
                elif server.glob is not None:
                    self.server_globs.append(compiled)
                elif server.host is not None:
                    self.by_host[server.host].append(compiled)
        elif match.provisioners:
            for pattern in match.provisioners:
                if pattern.glob is None:
                    self.by_provisioner[pattern.text].append(compiled)
                else:
                    self.provisioner_globs.append(compiled)
        elif match.storage_class_names:
            for name in match.storage_class_names:
                self.by_storage_class[name].append(compiled)
        else:
            self.always.append(compiled)

    def candidates(self, target: NFSTarget, server_ip: IPAddress | None) -> list[CompiledRule]:
        found: dict[int, CompiledRule] = {c.order: c for c in self.always}
        if target.server:
            if server_ip is not None:
                for c in self.by_ip.get(server_ip, ()):
                    found[c.order] = c
                # ipaddress properties are Python code: read them once, not per table.
                ip, ip_version, ip_bits = int(server_ip), server_ip.version, server_ip.max_prefixlen
                for (version, prefixlen), table in self.by_net.items():
                    if version != ip_version:
                        continue
                    bits = ip_bits - prefixlen
                    for c in table.get((ip >> bits) << bits, ()):
                        found[c.order] = c
            for c in self.by_host.get(target.server.lower().rstrip("."), ()):
                found[c.order] = c
            for c in self.server_globs:
                found[c.order] = c
        if target.provisioner:
            for c in self.by_provisioner.get(target.provisioner, ()):
                found[c.order] = c
        for c in self.provisioner_globs:
            found[c.order] = c
        if target.storage_class:
            for c in self.by_storage_class.get(target.storage_class, ()):
                found[c.order] = c
        return [found[k] for k in sorted(found)]


class _Nodes:
    """The kernels in a target's node scope, looked up at most once per decision."""

    def __init__(self, inventory: NodeInventory, target: NFSTarget) -> None:
        self._inventory = inventory
        self._target = target
        self._view: KernelView | None = None
        self.used_by: set[UnknownNodes] = set()

    @property
    def view(self) -> KernelView:
        if self._view is None:
            self._view = self._inventory.kernels_in(self._target.scope)
        return self._view

    def note(self) -> str:
        if self._view is None:
            return ""
        if not self._view.known:
            assumed = ", ".join(sorted(u.value for u in self.used_by)) or "unknownNodes"
            return f"unknown ({self._view.reason}): {assumed}"
        kernels = ", ".join(sorted(self._view.kernels)) or "none"
        return f"kernels in scope: {kernels}"


def _matches(
    match: Match,
    target: NFSTarget,
    server_ip: IPAddress | None,
    nodes: _Nodes,
    policy: Policy,
    *,
    excluding: bool = False,
) -> bool:
    if match.exports is not None:
        if not target.server:
            return False
        if not any(e.matches(target.server, server_ip, target.path) for e in match.exports):
            return False
    if match.provisioners is not None and not any(
        p.matches(target.provisioner) for p in match.provisioners
    ):
        return False
    if match.storage_class_names is not None and target.storage_class not in (
        match.storage_class_names
    ):
        return False
    if match.object_selector is not None and not match.object_selector.matches(target.labels):
        return False
    if match.node_kernels is not None:
        view = nodes.view
        if not view.known:
            nodes.used_by.add(policy.unknown_nodes)
            # assumeAffected means the RULE applies (docs/policy-authoring.md): its match
            # holds and its exclude does not; assumeUnaffected the other way round.
            return (policy.unknown_nodes is UnknownNodes.ASSUME_AFFECTED) is not excluding
        if not any(r.matches_any(view.kernels) for r in match.node_kernels):
            return False
    return True


class _Verdict(NamedTuple):
    """What the deciding rule did; ``Engine.decide`` adds what every decision carries."""

    outcome: Outcome
    message: str
    warnings: tuple[str, ...] = ()
    patch: tuple[dict[str, Any], ...] = ()
    after: EffectiveVersion | None = None  # None: unchanged
    notes: tuple[str, ...] = ()


def _short(text: str) -> str:
    clean = text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)
    return clean if len(clean) <= _MAX_WARNING else clean[: _MAX_WARNING - 3] + "..."


class PinRefused(Exception):
    """A pin cannot be written (e.g. an immutable field on UPDATE)."""


class PinIncomplete(Exception):
    """A pin would write a lone option where the driver needs a complete set (the
    place replaces the driver's defaults, and the profile does not know them)."""


class PinPlan(NamedTuple):
    """How a pin is written, and what the object's option places hold once it is."""

    ops: list[dict[str, Any]]  # JSON Patch operations against the object as given
    places: tuple[OptionPlace, ...]  # every option place, as the patch leaves it


def pin_plan(target: NFSTarget, pin: str, operation: str) -> PinPlan:
    """JSON Patch operations that leave exactly one ``nfsvers=<pin>`` where the node
    reads it and no version option anywhere else, and the places they leave behind.

    The operations apply to the object ``target`` was read from, by construction: each
    place's pointer was read from that object, so ``replace``/``remove`` name fields
    that are present and ``add`` fields that are absent (after adding a missing parent
    map). The test suites apply every patch with jsonpatch and read the result again
    to hold the engine to that."""
    ops: list[dict[str, Any]] = []
    after: list[OptionPlace] = []
    for place in target.places:
        if place.label == target.pin_place:
            base = list(place.entries)
            if place.replaces_defaults and not place.options:
                # Options written here replace the driver's defaults: write them all.
                if target.defaults is None:
                    raise PinIncomplete(
                        f"{place.label} replaces the {target.driver} driver's own mount "
                        f"options, so a lone {pin_option(pin)} there would drop them"
                    )
                base = list(target.defaults) if place.is_list else [",".join(target.defaults)]
            new = pin_entries(base, pin)
        elif any(is_version_option(o) for o in place.options):
            new = strip_entries(list(place.entries))
        else:
            after.append(place)
            continue
        if list(place.entries) == new and place.present:
            after.append(place)
            continue
        if not place.mutable and operation != "CREATE":
            held = ",".join(o for o in place.options if is_version_option(o))
            raise PinRefused(
                f"{place.label} {'holds ' + held if held else 'must be written'}"
                " and cannot change after creation"
            )
        if not place.present and place.container and new:
            ops.append({"op": "add", "path": place.container, "value": {}})
        op, written = _write(place, new)
        ops.append(op)
        after.append(written)
    return PinPlan(ops, tuple(after))


def _write(place: OptionPlace, new: list[str]) -> tuple[dict[str, Any], OptionPlace]:
    """The operation that makes ``place`` hold ``new`` (removed when empty), and the
    place as it then reads: one function, so the patch and the check agree."""
    value: Any = new if place.is_list else ",".join(new)
    written = OptionPlace(
        label=place.label,
        pointer=place.pointer,
        is_list=place.is_list,
        entries=(tuple(new) if place.is_list else (value,)) if new else (),
        present=bool(new),
        node_reads=place.node_reads,
        mutable=place.mutable,
        replaces_defaults=place.replaces_defaults,
        container=place.container,
    )
    if not new:
        return {"op": "remove", "path": place.pointer}, written
    if not place.present:
        return {"op": "add", "path": place.pointer, "value": value}, written
    return {"op": "replace", "path": place.pointer, "value": value}, written


class Engine:
    """All loaded policies, compiled and indexed. Immutable: hot reload swaps engines."""

    def __init__(
        self,
        policies: Sequence[Policy],
        profiles: DriverProfiles | Iterable[DriverProfile] | None = None,
    ) -> None:
        self.policies = tuple(policies)
        #: NFS driver profiles in the order they are tried: the built-ins unless given.
        if profiles is None:
            profiles = builtin_profiles()
        if not isinstance(profiles, DriverProfiles):
            profiles = DriverProfiles(profiles)
        self.profiles = profiles
        compiled: list[CompiledRule] = []
        for policy in self.policies:
            for rule in policy.rules:
                compiled.append(CompiledRule.of(len(compiled), policy, rule))
        self.rules = tuple(compiled)
        self._index = _Index(compiled)
        self.provisioners = _Provisioners(
            p for c in compiled for p in (c.rule.match.provisioners or ())
        )

    def read(self, obj: Mapping[str, Any]) -> NFSTarget | None:
        """The object's NFS target, or None when it is out of scope. Raises InvalidObject."""
        return read_target(obj, self.provisioners, self.profiles)

    def matching(
        self, target: NFSTarget, inventory: NodeInventory = _NO_INVENTORY
    ) -> tuple[list[CompiledRule], str]:
        """Every rule whose match holds and exclude does not, in load order, and a
        note on how node kernels were known (empty when no rule asked)."""
        server_ip = parse_ip(target.server) if target.server else None
        nodes = _Nodes(inventory, target)
        found = []
        for c in self._index.candidates(target, server_ip):
            if not _matches(c.rule.match, target, server_ip, nodes, c.policy):
                continue
            exclude = c.rule.exclude
            if (
                exclude is not None
                and not exclude.empty
                and _matches(exclude, target, server_ip, nodes, c.policy, excluding=True)
            ):
                continue
            found.append(c)
        return found, nodes.note()

    def decide(
        self,
        obj: Mapping[str, Any],
        *,
        operation: str = "CREATE",
        inventory: NodeInventory = _NO_INVENTORY,
    ) -> Decision:
        target = self.read(obj)
        if target is None:
            return Decision(Outcome.IGNORED)
        ev = target.effective_version()
        matched, nodes_note = self.matching(target, inventory)
        refs = tuple(c.ref for c in matched)
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
            return Decision(
                outcome, target=summary, matched=refs, before=ev, after=ev, nodes=nodes_note
            )
        deciding = min(matched, key=_rank)
        verdict = self._act(deciding, obj, target, ev, operation)
        return Decision(
            verdict.outcome,
            target=summary,
            deciding=deciding.ref,
            matched=refs,
            before=ev,
            after=verdict.after or ev,
            patch=verdict.patch,
            message=verdict.message,
            warnings=verdict.warnings,
            nodes=nodes_note,
            notes=verdict.notes,
        )

    def _act(
        self,
        deciding: CompiledRule,
        obj: Mapping[str, Any],
        target: NFSTarget,
        ev: EffectiveVersion,
        operation: str,
    ) -> _Verdict:
        rule, policy, who = deciding.rule, deciding.policy, deciding.who
        pin = pin_option(policy.pin)
        export = summary_export(target)
        seen = ev.describe()
        action = rule.action
        if action is Action.EXEMPT:
            return _Verdict(Outcome.EXEMPT, f"exempt by {who}")
        if action is Action.AUDIT:
            return _Verdict(Outcome.AUDITED, f"NFS {seen} for {export} audited by {who}")
        if action is Action.WARN:
            warning = _short(
                f"nfsguard: NFS {seen} on {export} is at risk ({rule.name}); consider {pin}"
            )
            return _Verdict(Outcome.WARNED, f"NFS {seen} for {export} warned by {who}", (warning,))
        unsupported = target.can_take(policy.pin)
        if action is Action.DENY:
            return _Verdict(
                Outcome.DENIED,
                f"{who} does not allow NFS {seen} for {export}: {_fix(pin, unsupported)}",
            )
        # pin: never one the driver cannot take (webhook.config.profiles profiles)
        if unsupported is not None:
            return _unsupported_pin(rule, who, target, export, policy.pin, unsupported)
        explicit = ev.kind in (VersionKind.EXPLICIT, VersionKind.CONFLICTING)
        if rule.on_explicit is OnExplicit.DENY and explicit:
            return _Verdict(
                Outcome.DENIED,
                f"{who} does not allow the explicit NFS {seen} for {export}: "
                f"{_fix(pin, unsupported)}",
            )
        try:
            plan = pin_plan(target, policy.pin, operation)
        except PinRefused as exc:
            warning = _short(
                f"nfsguard: cannot pin {target.kind} {target.name} on update ({rule.name}); "
                f"recreate it with {pin}"
            )
            return _Verdict(Outcome.WARNED, f"{who} would pin {pin}, but {exc}", (warning,))
        except PinIncomplete as exc:
            advice = target.pin_advice or (
                f"give the complete option set with {pin} in the object's mount options"
            )
            return _Verdict(
                Outcome.DENIED,
                f"{who} would pin {pin} for {export}, but {exc}: {advice}",
                notes=(f"incomplete pin: {exc}",),
            )
        if not plan.ops:
            return _Verdict(Outcome.COMPLIANT, f"already pinned by {who}")
        # Safety net: what the node would mount once the patch is applied, read through
        # the driver profile (defaults, what it appends, the helper's default version).
        mount_options = target.node_options(plan.places)
        after_ev = effective_version(mount_options)
        mounted = [o for o in mount_options if selected_version(o) is not None]
        if len(mounted) != 1 or after_ev.version != policy.pin:
            # The node would not mount with exactly the pin (a driver that appends its
            # own version option, a profile that misses a place).
            reason = (
                f"the node would mount with {','.join(mounted) or 'no version option'} "
                f"({after_ev.describe()}), not exactly {pin}"
            )
            return _unsupported_pin(rule, who, target, export, policy.pin, reason)
        old = ",".join(ev.options) or "no version"
        warning = _short(
            f"nfsguard: {old} -> {pin} by rule {rule.name} ({policy.name} {policy.version})"
        )
        return _Verdict(
            Outcome.MUTATED,
            f"{who} pinned {pin} for {export} (was NFS {seen})",
            (warning,),
            tuple(plan.ops),
            after_ev,
        )


def _fix(pin: str, unsupported: str | None) -> str:
    """How to comply with a denial; never a version the driver's servers cannot take."""
    if unsupported is not None:
        return f"{unsupported}; exempt this driver or narrow the rule"
    return f"set {pin} in mountOptions and remove every other version option"


def _unsupported_pin(
    rule: Rule,
    who: str,
    target: NFSTarget,
    export: str,
    pin: str,
    reason: str,
) -> _Verdict:
    """A pin the driver cannot take is never written: deny or warn (onUnsupportedPin)."""
    note = f"unsupported pin: {pin_option(pin)} not applied: {reason}"
    advice = f"; {target.pin_advice}" if target.pin_advice else ""
    message = f"{who} would pin {pin_option(pin)} for {export}, but {reason}{advice}"
    if rule.on_unsupported_pin is OnUnsupportedPin.DENY:
        return _Verdict(Outcome.DENIED, f"{message} (onUnsupportedPin: deny)", notes=(note,))
    warning = _short(
        f"nfsguard: {pin_option(pin)} not pinned on {target.driver} ({rule.name}): "
        f"its servers cannot take it"
    )
    return _Verdict(
        Outcome.WARNED,
        f"{message}; allowed unchanged (onUnsupportedPin: warn)",
        (warning,),
        notes=(note,),
    )


def summary_export(target: NFSTarget) -> str:
    if target.server is None:
        return f"{target.kind} {target.name} (no export known)"
    return f"{target.server}:{target.path}" if target.path else target.server
