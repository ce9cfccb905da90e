"""Node scopes: PV nodeAffinity and StorageClass allowedTopologies, as the scheduler reads them."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.engine.node_scope import scope_of
from webhook.nfs.scope import (
    ALL_NODES,
    Node,
    NodeScope,
    SelectorRequirement,
    SelectorTerm,
    node_in_scope,
)

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"

N1 = Node("node-1", "3.10.0-862.el7.x86_64", {ZONE: "a", HOST: "node-1", "gen": "3"})
N2 = Node("node-2", "5.15.0-91-generic", {ZONE: "b", HOST: "node-2", "gen": "10", "gpu": ""})
N3 = Node("node-3", "6.12.55+", {HOST: "node-3", "gen": "x"})
NODES = (N1, N2, N3)


def pv(terms: list[Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nfs": {"server": "10.0.0.1", "path": "/x"}}
    if terms is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": terms}}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "spec": spec}


def selected(scope: NodeScope) -> set[str]:
    return {n.name for n in NODES if node_in_scope(scope, n)}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "operator": op}
    if values:
        out["values"] = list(values)
    return out


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (expr(ZONE, "In", "a"), {"node-1"}),
        (expr(ZONE, "In", "a", "b"), {"node-1", "node-2"}),
        (expr(ZONE, "In", "z"), set()),
        (expr(ZONE, "NotIn", "a"), {"node-2", "node-3"}),  # absent label satisfies NotIn
        (expr(ZONE, "Exists"), {"node-1", "node-2"}),
        (expr("gpu", "Exists"), {"node-2"}),  # empty value still exists
        (expr(ZONE, "DoesNotExist"), {"node-3"}),
        (expr("gen", "Gt", "5"), {"node-2"}),  # numeric, not lexical: 10 > 5
        (expr("gen", "Lt", "5"), {"node-1"}),  # "x" is not an integer: no match
        (expr("gen", "Gt", "-1"), {"node-1", "node-2"}),
        (expr("gen", "Gt", "+2"), {"node-1", "node-2"}),
        (expr("missing", "Lt", "100"), set()),
    ],
)
def test_operators(requirement: dict[str, Any], expected: set[str]) -> None:
    assert selected(scope_of(pv([{"matchExpressions": [requirement]}]))) == expected


@pytest.mark.parametrize(
    "requirement",
    [
        expr(ZONE, "In"),  # In needs values
        expr(ZONE, "NotIn"),
        expr(ZONE, "Exists", "a"),  # Exists takes none
        expr(ZONE, "DoesNotExist", "a"),
        expr("gen", "Gt", "1", "2"),
        expr("gen", "Gt", "1.5"),
        expr("gen", "Gt", "1_000"),  # Go's ParseInt(s, 10, 64) rejects underscores
        expr("gen", "Lt", " 5"),
        expr("gen", "Lt", "99999999999999999999"),  # beyond int64
        expr(ZONE, "Like", "a"),
        {"key": ZONE, "values": ["a"]},  # no operator
        expr("", "Exists"),
    ],
)
def test_invalid_requirement_drops_its_term_only(requirement: dict[str, Any]) -> None:
    scope = scope_of(pv([{"matchExpressions": [requirement]}]))
    assert selected(scope) == set()
    assert scope.terms is not None and scope.terms[0].problem
    other = {"matchExpressions": [expr(ZONE, "In", "b")]}
    assert selected(scope_of(pv([{"matchExpressions": [requirement]}, other]))) == {"node-2"}


def test_terms_or_requirements_and() -> None:
    scope = scope_of(
        pv(
            [
                {"matchExpressions": [expr(ZONE, "In", "a", "b"), expr("gen", "Gt", "5")]},
                {"matchExpressions": [expr(ZONE, "DoesNotExist")]},
            ]
        )
    )
    assert selected(scope) == {"node-2", "node-3"}


def test_empty_term_matches_nothing() -> None:
    assert selected(scope_of(pv([{}]))) == set()
    assert selected(scope_of(pv([{"matchExpressions": []}]))) == set()
    assert selected(scope_of(pv([{}, {"matchExpressions": [expr(ZONE, "In", "a")]}]))) == {"node-1"}


def test_match_fields_metadata_name() -> None:
    by_name = scope_of(pv([{"matchFields": [expr("metadata.name", "In", "node-3")]}]))
    assert selected(by_name) == {"node-3"}
    not_name = scope_of(pv([{"matchFields": [expr("metadata.name", "NotIn", "node-3")]}]))
    assert selected(not_name) == {"node-1", "node-2"}
    both = scope_of(
        pv(
            [
                {
                    "matchExpressions": [expr(ZONE, "Exists")],
                    "matchFields": [expr("metadata.name", "NotIn", "node-1")],
                }
            ]
        )
    )
    assert selected(both) == {"node-2"}


@pytest.mark.parametrize(
    "field",
    [
        expr("metadata.name", "In", "node-1", "node-2"),  # exactly one value
        expr("metadata.name", "Exists"),
        expr("metadata.namespace", "In", "x"),
        expr("spec.unschedulable", "In", "true"),
    ],
)
def test_unsupported_match_fields_match_nothing(field: dict[str, Any]) -> None:
    assert selected(scope_of(pv([{"matchFields": [field]}]))) == set()


def test_pv_without_affinity_is_everywhere() -> None:
    assert scope_of(pv(None)) is ALL_NODES
    assert scope_of(pv([])) is ALL_NODES  # invalid anyway; widest is safest
    assert scope_of({"kind": "PersistentVolume"}) is ALL_NODES
    assert scope_of({"kind": "PersistentVolume", "spec": {"nodeAffinity": {}}}) is ALL_NODES
    assert ALL_NODES.everywhere and selected(ALL_NODES) == {"node-1", "node-2", "node-3"}


def test_malformed_terms_never_widen() -> None:
    assert selected(scope_of(pv(["junk"]))) == set()
    assert selected(scope_of(pv([{"matchExpressions": ["junk"]}]))) == set()
    assert selected(scope_of(pv([{"matchExpressions": "junk"}]))) == set()


def storage_class(topologies: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "provisioner": "nfs.csi.k8s.io",
    }
    if topologies is not None:
        sc["allowedTopologies"] = topologies
    return sc


def test_storage_class_allowed_topologies() -> None:
    assert scope_of(storage_class(None)) is ALL_NODES
    assert scope_of(storage_class([])) is ALL_NODES
    one = scope_of(storage_class([{"matchLabelExpressions": [{"key": ZONE, "values": ["a"]}]}]))
    assert selected(one) == {"node-1"}
    two = scope_of(
        storage_class(
            [
                {"matchLabelExpressions": [{"key": ZONE, "values": ["a"]}]},
                {"matchLabelExpressions": [{"key": HOST, "values": ["node-3"]}]},
            ]
        )
    )
    assert selected(two) == {"node-1", "node-3"}
    anded = scope_of(
        storage_class(
            [
                {
                    "matchLabelExpressions": [
                        {"key": ZONE, "values": ["a", "b"]},
                        {"key": "gen", "values": ["10"]},
                    ]
                }
            ]
        )
    )
    assert selected(anded) == {"node-2"}
    # A requirement without values is invalid (labels.NewRequirement);
    # an empty term selects nothing.
    assert selected(scope_of(storage_class([{"matchLabelExpressions": [{"key": ZONE}]}]))) == set()
    assert selected(scope_of(storage_class([{}]))) == set()


def test_scopes_are_hashable_and_equal_by_value() -> None:
    a = scope_of(pv([{"matchExpressions": [expr(ZONE, "In", "a")]}]))
    b = scope_of(pv([{"matchExpressions": [expr(ZONE, "In", "a")]}]))
    assert a == b and hash(a) == hash(b)
    assert len({a, b, ALL_NODES}) == 2


def test_str() -> None:
    scope = NodeScope(
        (
            SelectorTerm(
                (SelectorRequirement(ZONE, "In", ("a", "b")), SelectorRequirement("x", "Exists"))
            ),
        )
    )
    assert str(scope) == f"({ZONE} In (a,b) AND x Exists)"
    assert str(ALL_NODES) == "all nodes"
