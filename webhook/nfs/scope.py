"""Node selection: which nodes a PV's nodeAffinity or a StorageClass's allowedTopologies admit.

Semantics follow k8s.io/component-helpers/scheduling/corev1/nodeaffinity (what the
scheduler and kubelet's volume node-affinity check use):

* terms are ORed, requirements within a term ANDed;
* an empty term (no expressions, no fields) matches nothing;
* a term holding an invalid requirement matches nothing (the scheduler drops it;
  the API server would reject such an object at validation anyway): ``In`` and
  ``NotIn`` need at least one value, ``Exists`` and ``DoesNotExist`` none, ``Gt``
  and ``Lt`` exactly one base-10 int64; ``matchFields`` supports only
  ``metadata.name`` with ``In`` or ``NotIn`` and exactly one value;
* ``NotIn`` and ``DoesNotExist`` hold on a node without the label;
  ``Gt``/``Lt`` hold only when the node's label parses as an int64 too.

A PV with ``spec.nodeAffinity.required`` holding no terms at all, or a
StorageClass without ``allowedTopologies``, is scoped to every node
(``ALL_NODES``): the conservative reading for a kernel check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

__all__ = [
    "ALL_NODES",
    "OPERATORS",
    "Node",
    "NodeScope",
    "SelectorRequirement",
    "SelectorTerm",
    "node_in_scope",
]

OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"})
NAME_FIELD = "metadata.name"
_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_int64(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 64): optional sign, ASCII digits, int64 range."""
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


@dataclass(frozen=True)
class SelectorRequirement:
    """One node selector requirement (``key``, ``operator``, ``values``)."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist, Gt, Lt
    values: tuple[str, ...] = ()

    def problem(self, *, is_field: bool = False) -> str | None:
        """Why this requirement is invalid (the scheduler would drop its term), or None."""
        op, n = self.operator, len(self.values)
        if is_field:
            if self.key != NAME_FIELD:
                return f"field {self.key!r} not supported (only {NAME_FIELD})"
            if op not in ("In", "NotIn"):
                return f"operator {op!r} not supported for fields (In, NotIn)"
            return None if n == 1 else "field requirement must have exactly one value"
        if not self.key:
            return "empty key"
        if op in ("In", "NotIn"):
            return None if n else f"{op} needs at least one value"
        if op in ("Exists", "DoesNotExist"):
            return None if not n else f"{op} takes no values"
        if op in ("Gt", "Lt"):
            if n != 1 or _parse_int64(self.values[0]) is None:
                return f"{op} needs exactly one integer value"
            return None
        return f"unknown operator {op!r}"

    def holds(self, value: str | None) -> bool:
        """Whether a node whose label (or field) is ``value`` (None: absent) satisfies this."""
        op = self.operator
        if op == "In":
            return value is not None and value in self.values
        if op == "NotIn":
            return value is None or value not in self.values
        if op == "Exists":
            return value is not None
        if op == "DoesNotExist":
            return value is None
        if op in ("Gt", "Lt"):
            if value is None or len(self.values) != 1:
                return False
            have, want = _parse_int64(value), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == "Gt" else have < want
        return False


@dataclass(frozen=True)
class SelectorTerm:
    """Requirements ANDed together; terms of a ``NodeScope`` are ORed."""

    match_expressions: tuple[SelectorRequirement, ...] = ()
    match_fields: tuple[SelectorRequirement, ...] = ()

    @cached_property
    def problem(self) -> str | None:
        """Why this term can match no node (empty or invalid), or None."""
        if not self.match_expressions and not self.match_fields:
            return "empty term"
        for req in self.match_expressions:
            why = req.problem()
            if why:
                return f"matchExpressions {req.key!r}: {why}"
        for req in self.match_fields:
            why = req.problem(is_field=True)
            if why:
                return f"matchFields {req.key!r}: {why}"
        return None

    def matches(self, node: Node) -> bool:
        if self.problem is not None:
            return False
        labels = node.labels
        for req in self.match_expressions:
            if not req.holds(labels.get(req.key)):
                return False
        return all(req.holds(node.name) for req in self.match_fields)


@dataclass(frozen=True)
class NodeScope:
    """The nodes that may mount a volume.

    ``terms is None`` means every node (no nodeAffinity, no allowedTopologies).
    Hashable, so inventories can cache answers per scope.
    """

    terms: tuple[SelectorTerm, ...] | None = None

    @property
    def everywhere(self) -> bool:
        return self.terms is None

    def matches(self, node: Node) -> bool:
        if self.terms is None:
            return True
        return any(term.matches(node) for term in self.terms)

    def __str__(self) -> str:
        if self.terms is None:
            return "all nodes"
        return " OR ".join(_term_text(t) for t in self.terms) or "no nodes"


ALL_NODES = NodeScope()


@dataclass(frozen=True)
class Node:
    name: str
    kernel: str
    labels: Mapping[str, str] = field(default_factory=dict)


def _req_text(req: SelectorRequirement) -> str:
    if req.operator in ("Exists", "DoesNotExist"):
        return f"{req.key} {req.operator}"
    return f"{req.key} {req.operator} ({','.join(req.values)})"


def _term_text(term: SelectorTerm) -> str:
    parts = [_req_text(r) for r in (*term.match_expressions, *term.match_fields)]
    return "(" + " AND ".join(parts) + ")" if parts else "(nothing)"


def node_in_scope(scope: NodeScope, node: Node) -> bool:
    return scope.matches(node)
