"""What the engine knows about the cluster's nodes: the kernels in a node scope.

The engine never talks to the API server. It asks a ``NodeInventory`` for the
set of kernels that the nodes in a scope run; adapters fill the inventory from a
``kubectl get nodes -o yaml`` file (``StaticInventory``) or from a live
list/watch (``webhook.cluster.nodes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from webhook.core.scope import ALL_NODES, Node, NodeScope, node_in_scope

__all__ = [
    "ALL_NODES",
    "KernelView",
    "Node",
    "NodeInventory",
    "NodeScope",
    "StaticInventory",
    "UnknownInventory",
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


def nodes_from_objects(objects: Iterable[Mapping[str, Any]]) -> list[Node]:
    """Nodes from parsed ``kubectl get nodes -o yaml`` documents (Lists are flattened)."""
    nodes: list[Node] = []
    for obj in objects:
        if obj.get("kind") == "List" or obj.get("kind") == "NodeList":
            nodes.extend(nodes_from_objects(obj.get("items") or []))
            continue
        if obj.get("kind") != "Node":
            continue
        meta = obj.get("metadata") or {}
        info = (obj.get("status") or {}).get("nodeInfo") or {}
        nodes.append(
            Node(
                name=str(meta.get("name", "")),
                kernel=str(info.get("kernelVersion", "")),
                labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            )
        )
    return nodes


class StaticInventory:
    """A fixed set of nodes (``--nodes FILE``, tests)."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self._nodes = tuple(nodes)
        self._all = KernelView(frozenset(n.kernel for n in self._nodes if n.kernel))

    def kernels_in(self, scope: NodeScope) -> KernelView:
        if scope.everywhere:
            return self._all
        return KernelView(
            frozenset(n.kernel for n in self._nodes if n.kernel and node_in_scope(scope, n))
        )
