"""What the engine knows about the cluster's nodes: the kernels in a node scope.

The engine never talks to the API server. It asks a ``NodeInventory`` for the
set of kernels that the nodes in a scope run; adapters fill the inventory from a
``kubectl get nodes -o yaml`` file (``StaticInventory``) or from a live
list/watch (``webhook.cluster.nodes``).

Both answer from a ``NodeIndex``: an immutable snapshot of the nodes grouped by
kernel. A cluster of thousands of nodes runs a handful of kernels, so:

* the unscoped answer (every node) is precomputed once per snapshot;
* a scoped answer is computed once per (scope, snapshot) and cached; a new
  snapshot (a new *generation*) is made only when a node's name, kernel or
  labels change, so the cache survives the steady stream of status updates;
* computing a scoped answer narrows the candidate nodes with a per-label index
  (``In``/``Exists`` requirements and ``metadata.name``), built lazily for the
  keys scopes actually use, and stops as soon as every kernel has been seen.

Nodes that do not report a kernel yet (``kernelVersion`` empty, a node that is
still registering) are counted but contribute no kernel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from webhook.nfs.scope import (
    ALL_NODES,
    NAME_FIELD,
    Node,
    NodeScope,
    SelectorTerm,
    node_in_scope,
)

__all__ = [
    "ALL_NODES",
    "KernelView",
    "Node",
    "NodeIndex",
    "NodeInventory",
    "NodeScope",
    "StaticInventory",
    "UnknownInventory",
    "node_from_object",
    "node_in_scope",
    "nodes_from_objects",
]


@dataclass(frozen=True)
class KernelView:
    """The answer an inventory gives for one scope.

    ``known`` is False when the inventory cannot answer (never synced, watch
    stale, offline review without a nodes file): the policy's ``unknownNodes``
    then decides, and ``reason`` says why, for the decision record.
    """

    kernels: frozenset[str] = frozenset()
    known: bool = True
    reason: str = ""


class NodeInventory(Protocol):
    """Source of node kernels. Implementations must answer without I/O."""

    def kernels_in(self, scope: NodeScope) -> KernelView: ...


class UnknownInventory:
    """No inventory at all: every answer is "unknown"."""

    def __init__(self, reason: str = "no node inventory") -> None:
        self._view = KernelView(known=False, reason=reason)

    def kernels_in(self, scope: NodeScope) -> KernelView:
        return self._view


class NodeIndex:
    """An immutable snapshot of nodes, grouped by kernel, answering scope queries.

    Thread-safe: the snapshot never changes; the lazily built label indexes and
    the per-scope cache are filled under a lock (a racing reader at worst
    computes the same answer twice).
    """

    def __init__(
        self, nodes: Iterable[Node], *, generation: int = 0, cache_size: int = 4096
    ) -> None:
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.generation = generation
        self._cache_size = cache_size
        groups: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            groups.setdefault(node.kernel, []).append(i)
        self._kernel_of: tuple[str, ...] = tuple(n.kernel for n in self.nodes)
        self.by_kernel: Mapping[str, tuple[int, ...]] = {
            k: tuple(v) for k, v in groups.items() if k
        }
        self.kernels: frozenset[str] = frozenset(self.by_kernel)
        self.view_all = KernelView(self.kernels)
        self._lock = threading.Lock()
        self._labels: dict[str, dict[str, list[int]]] = {}
        self._names: dict[str, list[int]] | None = None
        self._cache: dict[NodeScope, KernelView] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def nodes_by_kernel(self) -> dict[str, int]:
        """How many nodes run each kernel (nodes without a kernel under ``""``)."""
        counts = {k: len(v) for k, v in self.by_kernel.items()}
        missing = sum(1 for k in self._kernel_of if not k)
        if missing:
            counts[""] = missing
        return counts

    def kernels_in(self, scope: NodeScope) -> KernelView:
        if scope.terms is None:
            return self.view_all
        view = self._cache.get(scope)
        if view is None:
            view = KernelView(self._compute(scope))
            with self._lock:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[scope] = view
        return view

    # -- computing one scope ---------------------------------------------------------

    def _compute(self, scope: NodeScope) -> frozenset[str]:
        assert scope.terms is not None
        found: set[str] = set()
        want = len(self.kernels)
        for term in scope.terms:
            if term.problem is not None:
                continue
            for i in self._candidates(term):
                kernel = self._kernel_of[i]
                if not kernel or kernel in found:
                    continue
                if term.matches(self.nodes[i]):
                    found.add(kernel)
                    if len(found) == want:
                        return frozenset(found)
        return frozenset(found)

    def _candidates(self, term: SelectorTerm) -> Iterable[int]:
        """Node indexes that may satisfy ``term`` (a superset; the caller checks)."""
        best: list[int] | None = None
        for req in term.match_fields:
            if req.key == NAME_FIELD and req.operator == "In":
                names = self._name_index()
                best = _smaller(best, [i for v in req.values for i in names.get(v, ())])
        for req in term.match_expressions:
            if req.operator == "In":
                index = self._label_index(req.key)
                best = _smaller(best, [i for v in req.values for i in index.get(v, ())])
            elif req.operator in ("Exists", "Gt", "Lt"):
                index = self._label_index(req.key)
                best = _smaller(best, [i for ids in index.values() for i in ids])
        if best is not None:
            return sorted(set(best))
        # No narrowing possible: walk kernel by kernel so each kernel is
        # decided by its first matching node.
        return (i for ids in self.by_kernel.values() for i in ids)

    def _label_index(self, key: str) -> dict[str, list[int]]:
        index = self._labels.get(key)
        if index is None:
            built: dict[str, list[int]] = {}
            for i, node in enumerate(self.nodes):
                value = node.labels.get(key)
                if value is not None:
                    built.setdefault(value, []).append(i)
            with self._lock:
                index = self._labels.setdefault(key, built)
        return index

    def _name_index(self) -> dict[str, list[int]]:
        names = self._names
        if names is None:
            built: dict[str, list[int]] = {}
            for i, node in enumerate(self.nodes):
                built.setdefault(node.name, []).append(i)
            with self._lock:
                if self._names is None:
                    self._names = built
                names = self._names
        return names


def _smaller(current: list[int] | None, other: list[int]) -> list[int]:
    return other if current is None or len(other) < len(current) else current


def node_from_object(obj: Mapping[str, Any]) -> Node:
    """A ``Node`` from one Kubernetes Node object (parsed JSON/YAML)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    status = obj.get("status")
    info = status.get("nodeInfo") if isinstance(status, Mapping) else None
    info = info if isinstance(info, Mapping) else {}
    labels = meta.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    return Node(
        name=str(meta.get("name", "")),
        kernel=str(info.get("kernelVersion") or "").strip(),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def nodes_from_objects(objects: Iterable[Mapping[str, Any]]) -> list[Node]:
    """Nodes from parsed ``kubectl get nodes -o yaml`` documents (Lists are flattened)."""
    nodes: list[Node] = []
    for obj in objects:
        if not isinstance(obj, Mapping):
            continue
        if obj.get("kind") in ("List", "NodeList"):
            nodes.extend(nodes_from_objects(obj.get("items") or []))
            continue
        if obj.get("kind") != "Node":
            continue
        nodes.append(node_from_object(obj))
    return nodes


class StaticInventory:
    """A fixed set of nodes (``--nodes FILE``, tests)."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self._index = NodeIndex(nodes)

    @property
    def index(self) -> NodeIndex:
        return self._index

    def kernels_in(self, scope: NodeScope) -> KernelView:
        return self._index.kernels_in(scope)
