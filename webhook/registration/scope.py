"""What may reach the webhook: the engine's scope as apiserver CEL ``matchConditions``.

With ``failurePolicy: Fail`` every object that reaches an unavailable webhook is
refused, and for cluster-scoped PVs and StorageClasses ``namespaceSelector`` never
skips anything (Kubernetes API reference, MatchConditions / NamespaceSelector). So
the blast radius of an outage is exactly what the matchConditions let through. This
module translates what ``webhook.engine.reading.read_target`` reads as in scope,
from the same loaded profiles and rules, into CEL:

- a PV with ``spec.nfs`` that an in-tree profile's match holds for;
- a CSI PV / StorageClass whose driver / provisioner a profile's match holds for
  (names exact or glob, volumeAttributes / parameters conditions, access modes);
- a CSI PV / StorageClass of a driver named by a rule (``match.provisioners``) that
  no profile names exactly (read generically, webhook/engine/reading.py).

and, whatever the object: never an object being deleted (``deletionTimestamp``), and
never an UPDATE that changes ``claimRef`` or ``finalizers`` while leaving every
mutable option place as it was (the PV controller's bind, the protection
controllers' finalizers: nfsguard would change nothing there, and refusing them
leaves PVs unbound or ``Terminating``).

CEL rules (k8s.io/apiserver pkg/admission/plugin/webhook/matchconditions): each
condition is a boolean; all must be true for the call; an evaluation error counts as
a webhook failure, so every field access is guarded with ``has()`` or optional
syntax (``.?``, ``[?]``); at most 64 conditions. Globs become anchored RE2 regexes
for ``matches()``. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from webhook.api.kube import (
    LEGACY_ANNOTATION,
    POD_KIND_RESOURCES,
    POD_SPEC_POINTERS,
    PROVISIONED_BY,
)
from webhook.api.profile import DriverProfile, ObjectMatch, ValueCondition
from webhook.engine.engine import Engine
from webhook.nfs.patterns import NamePattern

#: The apiserver's limit on matchConditions per webhook (admissionregistration validation).
MAX_MATCH_CONDITIONS = 64

PV = "persistentvolumes"
SC = "storageclasses"


_CEL_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def cel_string(text: str) -> str:
    """A CEL single-quoted string literal for ``text``. Control characters are escaped
    (``\\n``, ``\\xHH``): a raw line break ends a single-quoted literal, and the apiserver
    refuses the expression (cel-spec, "String and Bytes Literals")."""
    out = []
    for ch in text:
        escaped = _CEL_ESCAPES.get(ch)
        if escaped is None and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            escaped = f"\\x{ord(ch):02x}"
        out.append(escaped or ch)
    return "'" + "".join(out) + "'"


def re2_of(pattern: NamePattern) -> str:
    """An anchored RE2 regex matching what ``pattern`` matches (webhook/nfs/patterns.py
    compiles globs to Python regexes ending in ``\\Z``; RE2 has no ``\\Z``)."""
    if pattern.glob is None:
        return "^" + re.escape(pattern.text) + "$"
    body = pattern.glob.pattern
    if body.endswith(r"\Z"):
        body = body[: -len(r"\Z")]
    return "^(?:" + body + ")$"


def name_test(value: str, patterns: Sequence[NamePattern]) -> str:
    """CEL: ``value`` (a string expression) is one of ``patterns``."""
    exact = sorted({p.text for p in patterns if p.glob is None})
    parts: list[str] = []
    if len(exact) == 1:
        parts.append(f"{value} == {cel_string(exact[0])}")
    elif exact:
        parts.append(f"{value} in [{', '.join(cel_string(e) for e in exact)}]")
    for p in patterns:
        if p.glob is not None:
            parts.append(f"{value}.matches({cel_string(re2_of(p))})")
    return _any(parts)


def _any(parts: Sequence[str]) -> str:
    parts = [p for p in parts if p != "false"]
    if "true" in parts:
        return "true"
    if not parts:
        return "false"
    return parts[0] if len(parts) == 1 else "(" + " || ".join(parts) + ")"


def _all(parts: Sequence[str]) -> str:
    parts = [p for p in parts if p != "true"]
    if "false" in parts:
        return "false"
    if not parts:
        return "true"
    return parts[0] if len(parts) == 1 else "(" + " && ".join(parts) + ")"


#: CEL disjunction / conjunction of parts, simplified (shared with webhook/native).
any_of = _any
all_of = _all


def _condition(cond: ValueCondition, attrs: str) -> str:
    """CEL for a profile's volumeAttributes/parameters condition: a key equal to
    ``cond.key`` ignoring case, whose value one of the globs matches (any value when
    none). ``attrs`` is a map expression that exists (the caller guards it)."""
    key = f"k.lowerAscii() == {cel_string(cond.key)}"
    if not cond.values:
        return f"{attrs}.exists(k, {key})"
    return f"{attrs}.exists(k, {key} && {name_test(f'{attrs}[k]', cond.values)})"


def _conditions(m: ObjectMatch, attrs: str | None) -> str:
    if not m.conditions:
        return "true"
    if attrs is None:  # an in-tree PV has no attributes: every condition fails
        return "false"
    return _all([f"has({attrs})", *(_condition(c, attrs) for c in m.conditions)])


def _access_modes(m: ObjectMatch, root: str = "object") -> str:
    if not m.access_modes:
        return "true"
    return (
        f"has({root}.spec.accessModes) && {root}.spec.accessModes.exists(a, a in ["
        + ", ".join(cel_string(a) for a in m.access_modes)
        + "])"
    )


def _pv_in_tree(m: ObjectMatch, root: str = "object") -> str:
    """The PV half of ``_holds`` for an in-tree PV (the caller tested ``spec.nfs``);
    ``root`` is the object the CEL reads (``object``, or ``oldObject`` for webhook/native)."""
    if not m.in_tree:
        return "false"
    parts = []
    if m.provisioned_by:
        annotation = f"{root}.metadata.annotations[{cel_string(PROVISIONED_BY)}]"
        parts.append(
            f"(has({root}.metadata.annotations) && {cel_string(PROVISIONED_BY)} in "
            f"{root}.metadata.annotations && {name_test(annotation, m.provisioned_by)})"
        )
    parts.append(_access_modes(m, root))
    parts.append(_conditions(m, None))
    return _all(parts)


def _pv_csi(m: ObjectMatch, root: str = "object") -> str:
    """The PV half of ``_holds`` for a CSI PV (the caller tested ``spec.csi.driver``)."""
    if not m.csi_drivers:
        return "false"
    return _all(
        [
            name_test(f"{root}.spec.csi.driver", m.csi_drivers),
            _access_modes(m, root),
            _conditions(m, f"{root}.spec.csi.volumeAttributes"),
        ]
    )


def _sc(m: ObjectMatch, root: str = "object") -> str:
    if not m.provisioners:
        return "false"
    return _all(
        [name_test(f"{root}.provisioner", m.provisioners), _conditions(m, f"{root}.parameters")]
    )


def profile_holds(kind: str, m: ObjectMatch, root: str = "object") -> str:
    """CEL: ``webhook.engine.reading._holds`` of one profile's ``match`` for ``root``, a
    PV (in-tree when it has ``spec.nfs``, else CSI) or a StorageClass (the caller tested
    the kind). Shared with webhook/native, which names the profile that reads an object."""
    if kind == "StorageClass":
        return _all([f"has({root}.provisioner)", _sc(m, root)])
    in_tree, csi = _pv_in_tree(m, root), _pv_csi(m, root)
    return _any(
        [
            _all([f"has({root}.spec.nfs)", in_tree]),
            _all(
                [
                    f"!has({root}.spec.nfs) && has({root}.spec.csi) && has({root}.spec.csi.driver)",
                    csi,
                ]
            ),
        ]
    )


@dataclass(frozen=True)
class Scope:
    """What the loaded profiles and rules can act on, as the engine reads objects."""

    profiles: tuple[DriverProfile, ...]
    rule_drivers: tuple[NamePattern, ...]  # match.provisioners of every loaded rule

    @classmethod
    def of(cls, engine: Engine) -> Scope:
        drivers: dict[str, NamePattern] = {}
        for compiled in engine.rules:
            for p in compiled.rule.match.provisioners or ():
                drivers.setdefault(p.text, p)
        return cls(tuple(engine.profiles), tuple(drivers[k] for k in sorted(drivers)))

    def claimed(self, kind: str) -> frozenset[str]:
        """Driver names a profile names exactly for ``kind`` (DriverProfiles.claims)."""
        out: set[str] = set()
        for profile in self.profiles:
            rules = profile.rules_for(kind)
            if rules is None:
                continue
            m = rules.match
            names = m.csi_drivers if kind == "PersistentVolume" else m.provisioners
            out.update(n.text for n in names if n.glob is None)
        return frozenset(out)

    def generic(self, value: str, kind: str) -> str:
        """CEL: a driver (``value``) that rules name and no profile names exactly."""
        return self._generic(value, kind)

    def _generic(self, value: str, kind: str) -> str:
        """A driver a rule names and no profile names exactly: read generically."""
        claimed_set = self.claimed(kind)
        # A name a profile names exactly is read by that profile or not at all.
        drivers = [p for p in self.rule_drivers if p.glob is not None or p.text not in claimed_set]
        if not drivers:
            return "false"
        named = name_test(value, drivers)
        if all(p.glob is None for p in drivers):
            return named
        claimed = sorted(claimed_set)
        if not claimed:
            return named
        if len(claimed) == 1:
            return f"({named} && {value} != {cel_string(claimed[0])})"
        return f"({named} && !({value} in [{', '.join(cel_string(c) for c in claimed)}]))"

    def pv_expression(self) -> str:
        in_tree = _any(
            _dedupe(
                _pv_in_tree(p.persistent_volume.match)
                for p in self.profiles
                if p.persistent_volume is not None
            )
        )
        csi = _any(
            _dedupe(
                [
                    *(
                        _pv_csi(p.persistent_volume.match)
                        for p in self.profiles
                        if p.persistent_volume is not None
                    ),
                    self._generic("object.spec.csi.driver", "PersistentVolume"),
                ]
            )
        )
        return _any(
            [
                p
                for p in (
                    _all(["has(object.spec.nfs)", in_tree]),
                    _all(
                        [
                            "!has(object.spec.nfs) && has(object.spec.csi) "
                            "&& has(object.spec.csi.driver)",
                            csi,
                        ]
                    ),
                )
                if p != "false"
            ]
        )

    def sc_expression(self) -> str:
        return _all(
            [
                "has(object.provisioner)",
                _any(
                    _dedupe(
                        [
                            *(
                                _sc(p.storage_class.match)
                                for p in self.profiles
                                if p.storage_class is not None
                            ),
                            self._generic("object.provisioner", "StorageClass"),
                        ]
                    )
                ),
            ]
        )

    def inline_drivers(self) -> tuple[NamePattern, ...]:
        """CSI drivers whose profiles read inline volumes (``inlineVolumes``)."""
        out: dict[str, NamePattern] = {}
        for profile in self.profiles:
            if profile.inline_volumes and profile.persistent_volume is not None:
                for p in profile.persistent_volume.match.csi_drivers:
                    out.setdefault(p.text, p)
        return tuple(out.values())

    def pod_volume_test(self, volume: str) -> str:
        """CEL: the pod volume ``volume`` is one nfsguard reads (webhook/engine/pod_volumes.py):
        an inline ``nfs``, or a ``csi`` volume of a driver with inline support."""
        drivers = self.inline_drivers()
        csi = (
            f"(has({volume}.csi) && has({volume}.csi.driver) && "
            f"{name_test(volume + '.csi.driver', drivers)})"
            if drivers
            else "false"
        )
        return _any([f"has({volume}.nfs)", csi])

    def pod_expression(self, pod_spec: str) -> str:
        """CEL: the pod spec at ``pod_spec`` (an expression of optional steps, e.g.
        ``object.?spec``) names at least one volume nfsguard reads."""
        return f"{pod_spec}.?volumes.orValue([]).exists(v, {self.pod_volume_test('v')})"


#: The pod spec of each pod-bearing resource, as CEL optional steps from ``object``
#: (webhook/api/kube.py POD_SPEC_POINTERS).
POD_SPEC_CEL = {
    resource: "object"
    + "".join(f".?{step}" for step in POD_SPEC_POINTERS[kind].strip("/").split("/"))
    for kind, (_, resource) in POD_KIND_RESOURCES.items()
}


def pod_match_conditions(scope: Scope) -> list[dict[str, str]]:
    """The Pods-and-workloads webhook's matchConditions: only an object whose pod spec
    names an inline NFS (or NFS CSI) volume is ever sent, so every other pod in the
    cluster is created whatever state nfsguard is in (docs/pods-and-workloads.md)."""
    by_spec: dict[str, list[str]] = {}
    for resource, spec in POD_SPEC_CEL.items():
        by_spec.setdefault(spec, []).append(resource)
    branches = []
    default_spec = "object.?spec.?template.?spec"
    for spec, resources in by_spec.items():
        if spec == default_spec:
            continue
        test = " || ".join(
            f"request.resource.resource == {cel_string(r)}" for r in sorted(resources)
        )
        branches.append(f"({test}) ? {scope.pod_expression(spec)} : ")
    conditions = [
        {
            "name": "not-being-deleted",
            "expression": "!has(object.metadata) || !has(object.metadata.deletionTimestamp)",
        },
        {
            # A workload UPDATE that keeps its volumes (scale, a controller's annotations)
            # changes nothing nfsguard reads: never in the way (pods are CREATE only).
            "name": "volumes-changed",
            "expression": (
                "request.operation != 'UPDATE' || oldObject == null || "
                + " || ".join(
                    f"{spec}.?volumes != {spec.replace('object', 'oldObject', 1)}.?volumes"
                    for spec in by_spec
                )
            ),
        },
        {
            "name": "inline-nfs-volume",
            "expression": "".join(branches) + scope.pod_expression(default_spec),
        },
    ]
    assert len(conditions) <= MAX_MATCH_CONDITIONS
    return conditions


def _dedupe(parts: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for p in parts:
        if p != "false":
            seen.setdefault(p, None)
    return list(seen)


_OPTIONS_UNCHANGED = (
    "(request.resource.resource == 'persistentvolumes' "
    "? (object.?spec.?mountOptions == oldObject.?spec.?mountOptions && "
    f"object.metadata.?annotations[?{cel_string(LEGACY_ANNOTATION)}] == "
    f"oldObject.metadata.?annotations[?{cel_string(LEGACY_ANNOTATION)}]) "
    ": object.?mountOptions == oldObject.?mountOptions)"
)
_BIND_OR_FINALIZERS = (
    "(object.?spec.?claimRef != oldObject.?spec.?claimRef || "
    "object.metadata.?finalizers != oldObject.metadata.?finalizers)"
)


def match_conditions(scope: Scope) -> list[dict[str, str]]:
    """The webhook's matchConditions (all must hold for the apiserver to call it)."""
    conditions = [
        {
            # Deletion completes by finalizer-removing UPDATEs: never in the way.
            "name": "not-being-deleted",
            "expression": "!has(object.metadata) || !has(object.metadata.deletionTimestamp)",
        },
        {
            # The PV controller's bind and the protection controllers' finalizer
            # edits change no option: nfsguard would change nothing there.
            "name": "not-a-bind-or-finalizer-update",
            "expression": (
                "request.operation != 'UPDATE' || oldObject == null || "
                f"!({_OPTIONS_UNCHANGED} && {_BIND_OR_FINALIZERS})"
            ),
        },
        {
            "name": "nfs-in-scope",
            "expression": (
                f"request.resource.resource == {cel_string(PV)} ? {scope.pv_expression()} : "
                f"request.resource.resource == {cel_string(SC)} ? {scope.sc_expression()} : "
                "false"
            ),
        },
    ]
    assert len(conditions) <= MAX_MATCH_CONDITIONS
    return conditions
