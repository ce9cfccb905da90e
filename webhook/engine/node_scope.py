"""The node scope an object's own fields give: which nodes may mount it.

A PV's ``spec.nodeAffinity.required``, a StorageClass's ``allowedTopologies``
(whose ``matchLabelExpressions`` mean ``In``: k8s.io/api/core/v1 TopologySelectorTerm)
and a pod spec's ``nodeName``, ``nodeSelector`` and required node affinity
(``pod_scope``) are read into ``webhook.nfs.scope.NodeScope``, which the
NodeInventory port resolves to kernels. Reading is lenient where the API is: an unreadable
requirement keeps its term invalid rather than widening it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.api.kube import JSON_OBJECT
from webhook.nfs.scope import ALL_NODES, NodeScope, SelectorRequirement, SelectorTerm


def _values(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list | tuple):
        return tuple(str(v) for v in raw)
    return ()


def _requirements(items: Any, *, default_operator: str = "") -> tuple[SelectorRequirement, ...]:
    out: list[SelectorRequirement] = []
    if not isinstance(items, list | tuple):
        return ()
    for item in items:
        if not isinstance(item, JSON_OBJECT):
            # Unreadable requirement: keep the term invalid rather than widen it.
            out.append(SelectorRequirement(key="", operator=""))
            continue
        out.append(
            SelectorRequirement(
                key=str(item.get("key", "")),
                operator=str(item.get("operator", default_operator)),
                values=_values(item.get("values")),
            )
        )
    return tuple(out)


def _child(value: Any, key: str) -> Any:
    """``value[key]`` when ``value`` is a JSON object, else None."""
    if value is None:  # the usual case (no nodeAffinity): skip the Mapping ABC check
        return None
    return value.get(key) if isinstance(value, JSON_OBJECT) else None


def scope_of(obj: Mapping[str, Any]) -> NodeScope:
    """The node scope of a PV (``spec.nodeAffinity.required``) or StorageClass
    (``allowedTopologies``, whose ``matchLabelExpressions`` mean ``In``)."""
    if obj.get("kind") == "StorageClass":
        topologies = obj.get("allowedTopologies")
        if not isinstance(topologies, list) or not topologies:
            return ALL_NODES
        terms = []
        for topo in topologies:
            exprs = topo.get("matchLabelExpressions") if isinstance(topo, JSON_OBJECT) else None
            reqs = _requirements(exprs)
            # Topology requirements have no operator: it is always In.
            reqs = tuple(SelectorRequirement(r.key, "In", r.values) for r in reqs)
            terms.append(SelectorTerm(match_expressions=reqs))
        return NodeScope(tuple(terms))
    affinity = _child(obj.get("spec"), "nodeAffinity")
    raw_terms = _child(_child(affinity, "required"), "nodeSelectorTerms")
    if not isinstance(raw_terms, list) or not raw_terms:
        return ALL_NODES
    return NodeScope(
        tuple(
            SelectorTerm(
                match_expressions=_requirements(t.get("matchExpressions")),
                match_fields=_requirements(t.get("matchFields")),
            )
            if isinstance(t, JSON_OBJECT)
            else SelectorTerm()
            for t in raw_terms
        )
    )


def pod_scope(pod_spec: Mapping[str, Any]) -> NodeScope:
    """The nodes a pod spec may run on, as the scheduler filters them
    (k8s.io/component-helpers/scheduling/corev1 GetRequiredNodeAffinity): ``nodeName``
    (a ``metadata.name`` field requirement), AND every ``nodeSelector`` label (``In``),
    AND one of the terms of
    ``affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution``. Preferred
    affinity and tolerations do not narrow it. Nothing given: every node."""
    common: list[SelectorRequirement] = []
    selector = pod_spec.get("nodeSelector")
    if isinstance(selector, JSON_OBJECT):
        for key, value in sorted(selector.items()):
            common.append(SelectorRequirement(str(key), "In", (str(value),)))
    node_name = pod_spec.get("nodeName")
    fields: tuple[SelectorRequirement, ...] = ()
    if isinstance(node_name, str) and node_name:
        fields = (SelectorRequirement("metadata.name", "In", (node_name,)),)
    required = _child(
        _child(
            _child(pod_spec.get("affinity"), "nodeAffinity"),
            "requiredDuringSchedulingIgnoredDuringExecution",
        ),
        "nodeSelectorTerms",
    )
    if isinstance(required, list) and required:
        return NodeScope(tuple(_pod_term(t, common, fields) for t in required))
    if not common and not fields:
        return ALL_NODES
    return NodeScope((SelectorTerm(match_expressions=tuple(common), match_fields=fields),))


def _pod_term(
    raw: Any, common: list[SelectorRequirement], fields: tuple[SelectorRequirement, ...]
) -> SelectorTerm:
    """One required affinity term ANDed with nodeSelector and nodeName; a term that is
    empty (or unreadable) in itself matches no node, whatever is added to it."""
    if not isinstance(raw, JSON_OBJECT):
        return SelectorTerm()
    own = SelectorTerm(
        match_expressions=_requirements(raw.get("matchExpressions")),
        match_fields=_requirements(raw.get("matchFields")),
    )
    if not own.match_expressions and not own.match_fields:
        return own
    return SelectorTerm(
        match_expressions=(*common, *own.match_expressions),
        match_fields=(*fields, *own.match_fields),
    )
