"""The rows of ``nfsguard scan``/``remediate`` output, and the site-policy rule a scan
suggests when pods are stranded on an export no rule covers.

The row keys are a contract (webhook/data/scan-output.schema.json, docs/after-an-incident.md):
``kind``, ``name``, ``verdict``, ``rule``, ``export``, ``version``, ``patch``, ``pods``;
the others add what an operator acts on. Pure: plain data in, plain data out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.engine.scan import Classification, ScanVerdict
from webhook.engine.stranded import PodRef


def row(
    c: Classification,
    pods: Sequence[PodRef],
    *,
    resource_version: str = "",
    claim: tuple[str, str] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """One object of the report, from its classification and the pods that use it.
    Pods and workloads add ``namespace`` and ``volume`` (the deciding inline volume)
    and ``volumes`` (every inline NFS volume's outcome)."""
    t, ev = c.target, c.evaluation
    eff = ev.effective
    assert eff is not None  # every target read has one
    ref = ev.decision.deciding
    d = ev.decision
    return {
        "kind": t.kind,
        "name": t.name,
        "verdict": c.verdict.value,
        "rule": ref.rule if ref is not None else None,
        "policy": (
            {"name": ref.policy, "version": ref.policy_version, "digest": ref.policy_digest}
            if ref is not None
            else None
        ),
        "export": d.target.export if d.target is not None else None,
        "version": eff.describe(),
        "effectiveVersion": eff.to_dict(),
        "patch": [dict(op) for op in c.patch] if c.patch is not None else None,
        "pods": [p.to_dict() for p in pods],
        "claim": {"namespace": claim[0], "name": claim[1]} if claim is not None else None,
        "driver": t.driver,
        "storageClass": t.storage_class,
        "outcome": d.outcome.value,
        "covered": c.covered,
        "reason": c.reason,
        "wayOut": c.way_out or None,
        "resourceVersion": resource_version or None,
        **(
            {
                "namespace": namespace,
                "volume": t.volume,
                "volumes": [v.to_dict() for v in d.volumes],
            }
            if t.volume
            else {}
        ),
    }


def empty_summary() -> dict[str, int]:
    return {v.value: 0 for v in ScanVerdict}


@dataclass
class Evidence:
    """What the pods stranded on one uncovered export show."""

    server: str
    path: str | None
    objects: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)


class Uncovered:
    """Exports that strand pods while no rule covers them (the incident's first hour)."""

    def __init__(self) -> None:
        self.exports: dict[tuple[str, str | None], Evidence] = {}

    def note(self, c: Classification, pods: Sequence[PodRef]) -> bool:
        """Collect ``c`` when it is uncovered, affected and strands a pod; True then."""
        t, eff = c.target, c.evaluation.effective
        stranded = [p for p in pods if p.stranded]
        if c.covered or not stranded or eff is None or not eff.affected or t.server is None:
            return False
        key = (t.server, t.path)
        e = self.exports.setdefault(key, Evidence(t.server, t.path))
        e.objects.append(f"{t.kind}/{t.name}")
        for p in stranded:
            e.pods.append(f"{p.namespace}/{p.name}")
            if p.node:
                e.nodes.add(p.node)
            for m in p.messages:
                if m not in e.messages and len(e.messages) < 3:
                    e.messages.append(m)
        return True

    def __bool__(self) -> bool:
        return bool(self.exports)


def _rule_name(server: str, taken: set[str]) -> str:
    base = "pin-" + re.sub(r"[^a-z0-9]+", "-", server.lower()).strip("-")
    base = base[:55].rstrip("-") or "pin-export"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def suggest_policy(
    uncovered: Iterable[Evidence], *, pin: str = "4.0", version: str, name: str = "suggested-pins"
) -> dict[str, Any]:
    """A site policy (NFSMountPolicy) with one pin rule per server that strands pods,
    matching exactly the exports seen; the evidence goes into each rule's description
    so a reviewer sees why it exists. Lint-clean by construction (tests lint it)."""
    by_server: dict[str, list[Evidence]] = {}
    for e in uncovered:
        by_server.setdefault(e.server, []).append(e)
    rules: list[dict[str, Any]] = []
    taken: set[str] = set()
    for server, found in sorted(by_server.items()):
        pods = sorted({p for e in found for p in e.pods})
        nodes = sorted({n for e in found for n in e.nodes})
        messages = [m for e in found for m in e.messages][:3]
        objects = sorted({o for e in found for o in e.objects})
        description = (
            f"suggested by nfsguard scan: {len(pods)} pod(s) stranded in ContainerCreating "
            f"with FailedMount events on {', '.join(nodes) or 'unknown nodes'} "
            f"({', '.join(pods[:10])}{' ...' if len(pods) > 10 else ''}), "
            f"volumes {', '.join(objects[:10])}{' ...' if len(objects) > 10 else ''}"
            + (f"; events: {' | '.join(_clip(m) for m in messages)}" if messages else "")
            + f". Check that the server speaks NFS {pin} before applying."
        )
        exports: list[dict[str, str]] = []
        for e in sorted(found, key=lambda e: e.path or ""):
            entry = {"server": server}
            if e.path:
                entry["path"] = e.path
            if entry not in exports:
                exports.append(entry)
        if any("path" not in x for x in exports):
            exports = [{"server": server}]
        rules.append(
            {
                "name": _rule_name(server, taken),
                "description": description,
                "match": {"exports": exports},
                "action": "pin",
            }
        )
    return {
        "apiVersion": "nfsguard.io/v1alpha1",
        "kind": "NFSMountPolicy",
        "metadata": {"name": name},
        "spec": {"version": version, "pin": pin, "rules": rules},
    }


def _clip(message: str, limit: int = 160) -> str:
    one = " ".join(message.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def summary_line(summary: Mapping[str, int], *, stranded: int, ignored: int = 0) -> str:
    parts = [f"{summary.get(v.value, 0)} {v.value}" for v in ScanVerdict]
    extra = f", {stranded} stranded pod(s)"
    if ignored:
        extra += f", {ignored} not NFS"
    return "summary: " + ", ".join(parts) + extra
