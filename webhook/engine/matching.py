"""Which candidate rules hold for an object: ``match`` holds and ``exclude`` does not.

Every key a rule gives must match (AND), items of a list are alternatives (OR)
(docs/policy-authoring.md). ``nodeKernels`` asks the ``NodeInventory`` port for
the kernels in the object's node scope, at most once per review; when the
inventory cannot answer, the policy's ``unknownNodes`` decides, and the note
says so for the decision record.
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook.api.policy import Match, Policy, UnknownNodes
from webhook.api.target import NFSTarget
from webhook.engine.index import CompiledRule
from webhook.nfs.inventory import KernelView, NodeInventory
from webhook.nfs.patterns import IPAddress


class _Nodes:
    """The kernels in a target's node scope, looked up at most once per review."""

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


def matching(
    candidates: Iterable[CompiledRule],
    target: NFSTarget,
    server_ip: IPAddress | None,
    inventory: NodeInventory,
) -> tuple[list[CompiledRule], str]:
    """Every candidate whose match holds and exclude does not, in the order given, and
    a note on how node kernels were known (empty when no rule asked)."""
    nodes = _Nodes(inventory, target)
    found = []
    for c in candidates:
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
