"""Inventories: static nodes, unknown inventory, the kernel-grouped index and its cache."""

from __future__ import annotations

import random
from typing import Any

import pytest

from webhook.engine.node_scope import scope_of
from webhook.nfs.inventory import (
    ALL_NODES,
    KernelView,
    NodeIndex,
    StaticInventory,
    UnknownInventory,
    node_from_object,
    nodes_from_objects,
)
from webhook.nfs.scope import Node, NodeScope, SelectorRequirement, SelectorTerm

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
KERNELS = [
    "3.10.0-1160.el7.x86_64",
    "4.18.0-477.10.1.el8_8.x86_64",
    "5.15.0-91-generic",
    "6.12.55+",
    "5.15.136-flatcar",
]


def node_obj(name: str, kernel: str | None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "status": {},
    }
    if kernel is not None:
        obj["status"]["nodeInfo"] = {"kernelVersion": kernel, "osImage": "x"}
    return obj


def fleet(n: int, seed: int = 7) -> list[Node]:
    rnd = random.Random(seed)
    nodes = []
    for i in range(n):
        kernel = KERNELS[i % len(KERNELS)] if i % 97 else KERNELS[0]
        zone = "abc"[rnd.randrange(3)]
        nodes.append(Node(f"n{i}", kernel, {HOST: f"n{i}", ZONE: zone, "pool": f"p{i % 10}"}))
    return nodes


def term(*reqs: SelectorRequirement, fields: tuple[SelectorRequirement, ...] = ()) -> SelectorTerm:
    return SelectorTerm(match_expressions=reqs, match_fields=fields)


def brute(nodes: list[Node], scope: NodeScope) -> frozenset[str]:
    return frozenset(n.kernel for n in nodes if n.kernel and scope.matches(n))


def test_nodes_from_objects_flattens_lists() -> None:
    docs = [
        {"kind": "List", "items": [node_obj("a", KERNELS[0], {ZONE: "x"}), {"kind": "Pod"}]},
        node_obj("b", KERNELS[1]),
        {"kind": "NodeList", "items": [node_obj("c", None)]},
        {"kind": "ConfigMap"},
    ]
    nodes = nodes_from_objects(docs)
    assert [(n.name, n.kernel) for n in nodes] == [("a", KERNELS[0]), ("b", KERNELS[1]), ("c", "")]
    assert nodes[0].labels == {ZONE: "x"}


def test_node_from_object_tolerates_junk() -> None:
    assert node_from_object({}) == Node("", "", {})
    weird = node_from_object({"metadata": "x", "status": {"nodeInfo": None}})
    assert weird == Node("", "", {})
    assert node_from_object(node_obj("a", " 5.15.0-91-generic\n")).kernel == "5.15.0-91-generic"


def test_unknown_inventory() -> None:
    view = UnknownInventory("offline review without --nodes").kernels_in(ALL_NODES)
    assert view == KernelView(known=False, reason="offline review without --nodes")


def test_static_inventory_scoped_and_unscoped() -> None:
    nodes = nodes_from_objects(
        [
            node_obj("a", KERNELS[0], {ZONE: "x", HOST: "a"}),
            node_obj("b", KERNELS[2], {ZONE: "y", HOST: "b"}),
            node_obj("c", KERNELS[2], {ZONE: "y", HOST: "c"}),
            node_obj("d", None, {ZONE: "x", HOST: "d"}),
        ]
    )
    inv = StaticInventory(nodes)
    assert inv.kernels_in(ALL_NODES) == KernelView(frozenset({KERNELS[0], KERNELS[2]}))
    zone_x = NodeScope((term(SelectorRequirement(ZONE, "In", ("x",))),))
    assert inv.kernels_in(zone_x).kernels == {KERNELS[0]}  # d has no kernel yet
    assert inv.kernels_in(zone_x).known
    nowhere = NodeScope((term(SelectorRequirement(ZONE, "In", ("z",))),))
    assert inv.kernels_in(nowhere) == KernelView(frozenset())
    assert inv.index.nodes_by_kernel() == {KERNELS[0]: 1, KERNELS[2]: 2, "": 1}


def test_index_groups_by_kernel() -> None:
    nodes = fleet(1000)
    index = NodeIndex(nodes, generation=3)
    assert index.generation == 3 and len(index) == 1000
    assert index.kernels == frozenset(KERNELS)
    assert sum(index.nodes_by_kernel().values()) == 1000
    assert index.kernels_in(ALL_NODES) is index.view_all


SCOPES = [
    NodeScope((term(SelectorRequirement(HOST, "In", ("n5", "n7"))),)),
    NodeScope(
        (term(SelectorRequirement(HOST, "In", ("n5",)), SelectorRequirement(ZONE, "In", ("a",))),)
    ),
    NodeScope((term(SelectorRequirement(ZONE, "In", ("a", "b"))),)),
    NodeScope((term(SelectorRequirement(ZONE, "NotIn", ("a", "b", "c"))),)),
    NodeScope((term(SelectorRequirement("pool", "In", ("p3",))),)),
    NodeScope((term(SelectorRequirement("pool", "Exists")),)),
    NodeScope((term(SelectorRequirement("gpu", "Exists")),)),
    NodeScope((term(SelectorRequirement("pool", "DoesNotExist")),)),
    NodeScope((term(fields=(SelectorRequirement("metadata.name", "In", ("n97",)),)),)),
    NodeScope((term(fields=(SelectorRequirement("metadata.name", "NotIn", ("n97",)),)),)),
    NodeScope(
        (
            term(SelectorRequirement(HOST, "In", ("n1",))),
            term(SelectorRequirement(HOST, "In", ("n2",))),
        )
    ),
    NodeScope((term(),)),
    NodeScope((term(SelectorRequirement(ZONE, "In", ())),)),  # invalid term
    NodeScope(()),
]


@pytest.mark.parametrize("scope", SCOPES, ids=str)
def test_index_agrees_with_brute_force(scope: NodeScope) -> None:
    nodes = fleet(600)
    index = NodeIndex(nodes)
    assert index.kernels_in(scope).kernels == brute(nodes, scope)
    # Cached: the same object comes back.
    assert index.kernels_in(scope) is index.kernels_in(scope)


def test_index_agrees_with_brute_force_random_scopes() -> None:
    rnd = random.Random(11)
    nodes = fleet(300, seed=3)
    index = NodeIndex(nodes)
    ops = ["In", "NotIn", "Exists", "DoesNotExist"]
    keys = [HOST, ZONE, "pool", "absent"]
    values = ["a", "b", "c", "n1", "n2", "n3", "n194", "p1", "p2"]
    for _ in range(400):
        terms = []
        for _t in range(rnd.randrange(1, 3)):
            reqs = []
            for _r in range(rnd.randrange(1, 3)):
                op = rnd.choice(ops)
                vals = tuple(rnd.sample(values, 2)) if op in ("In", "NotIn") else ()
                reqs.append(SelectorRequirement(rnd.choice(keys), op, vals))
            terms.append(term(*reqs))
        scope = NodeScope(tuple(terms))
        assert index.kernels_in(scope).kernels == brute(nodes, scope), scope


def test_cache_is_bounded() -> None:
    index = NodeIndex(fleet(50), cache_size=4)
    for i in range(20):
        scope = NodeScope((term(SelectorRequirement(HOST, "In", (f"n{i}",))),))
        assert index.kernels_in(scope).kernels == {KERNELS[i % len(KERNELS)] if i else KERNELS[0]}
    assert len(index._cache) <= 4


def test_scope_of_pv_against_static_inventory() -> None:
    nodes = fleet(100)
    inv = StaticInventory(nodes)
    pv = {
        "kind": "PersistentVolume",
        "spec": {
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": HOST, "operator": "In", "values": ["n2"]}]}
                    ]
                }
            }
        },
    }
    assert inv.kernels_in(scope_of(pv)).kernels == {KERNELS[2]}
