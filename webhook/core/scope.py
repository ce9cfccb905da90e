"""Node selection: which nodes a PV's nodeAffinity or a StorageClass's allowedTopologies admit.

Semantics follow k8s.io/component-helpers/scheduling/corev1/nodeaffinity: terms are
ORed, requirements within a term ANDed; an empty term matches nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SelectorRequirement:
    """One node selector requirement (``key``, ``operator``, ``values``)."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist, Gt, Lt
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class SelectorTerm:
    """Requirements ANDed together; terms of a ``NodeScope`` are ORed."""

    match_expressions: tuple[SelectorRequirement, ...] = ()
    match_fields: tuple[SelectorRequirement, ...] = ()


@dataclass(frozen=True)
class NodeScope:
    """The nodes that may mount a volume.

    ``terms is None`` means every node (no nodeAffinity, no allowedTopologies).
    """

    terms: tuple[SelectorTerm, ...] | None = None

    @property
    def everywhere(self) -> bool:
        return self.terms is None


ALL_NODES = NodeScope()


@dataclass(frozen=True)
class Node:
    name: str
    kernel: str
    labels: Mapping[str, str] = field(default_factory=dict)


def _requirement_holds(req: SelectorRequirement, value: str | None) -> bool:
    op = req.operator
    if op == "In":
        return value is not None and value in req.values
    if op == "NotIn":
        return value is None or value not in req.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        # Both sides must parse as integers (nodeaffinity.go); otherwise no match.
        if value is None or len(req.values) != 1:
            return False
        try:
            have, want = int(value), int(req.values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_holds(term: SelectorTerm, node: Node) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False
    for req in term.match_expressions:
        if not _requirement_holds(req, node.labels.get(req.key)):
            return False
    for req in term.match_fields:
        # Only metadata.name is a supported field selector for nodes.
        value = node.name if req.key == "metadata.name" else None
        if not _requirement_holds(req, value):
            return False
    return True


def node_in_scope(scope: NodeScope, node: Node) -> bool:
    if scope.terms is None:
        return True
    return any(_term_holds(term, node) for term in scope.terms)


def _requirements(items: Any) -> tuple[SelectorRequirement, ...]:
    out: list[SelectorRequirement] = []
    for item in items or ():
        if not isinstance(item, Mapping):
            continue
        values = item.get("values") or ()
        out.append(
            SelectorRequirement(
                key=str(item.get("key", "")),
                operator=str(item.get("operator", "In")),
                values=tuple(str(v) for v in values) if isinstance(values, list) else (),
            )
        )
    return tuple(out)


def scope_of(obj: Mapping[str, Any]) -> NodeScope:
    """The node scope of a PV (``spec.nodeAffinity.required``) or StorageClass
    (``allowedTopologies``, whose expressions mean ``In``)."""
    if obj.get("kind") == "StorageClass":
        topologies = obj.get("allowedTopologies")
        if not isinstance(topologies, list) or not topologies:
            return ALL_NODES
        terms = []
        for topo in topologies:
            exprs = topo.get("matchLabelExpressions") if isinstance(topo, Mapping) else None
            reqs = tuple(
                SelectorRequirement(
                    key=str(e.get("key", "")),
                    operator="In",
                    values=tuple(str(v) for v in (e.get("values") or ())),
                )
                for e in (exprs or ())
                if isinstance(e, Mapping)
            )
            terms.append(SelectorTerm(match_expressions=reqs))
        return NodeScope(tuple(terms))
    spec = obj.get("spec")
    affinity = spec.get("nodeAffinity") if isinstance(spec, Mapping) else None
    required = affinity.get("required") if isinstance(affinity, Mapping) else None
    raw_terms = required.get("nodeSelectorTerms") if isinstance(required, Mapping) else None
    if not isinstance(raw_terms, list) or not raw_terms:
        return ALL_NODES
    return NodeScope(
        tuple(
            SelectorTerm(
                match_expressions=_requirements(t.get("matchExpressions")),
                match_fields=_requirements(t.get("matchFields")),
            )
            for t in raw_terms
            if isinstance(t, Mapping)
        )
    )
