"""``nfsguard policy explain``: why nfsguard decides what it decides about an object.

An explanation puts side by side what the engine reads from the object (driver,
export, every place mount options live and which one the node reads, the
effective version), every rule that matched, which one decided and why
(precedence), and the decision itself (outcome, message, patch). The decision
is passed in, made by the same ``decide`` the server uses; this module only
reads the engine (``Engine.read`` and ``Engine.matching``), so explaining never
changes an answer.

The JSON form (``to_json``) is documented in docs/policy-authoring.md; its keys
are stable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.api.decision import Action, Decision, Outcome
from webhook.api.target import NFSTarget
from webhook.engine.engine import CompiledRule, Engine
from webhook.nfs.inventory import NodeInventory
from webhook.nfs.options import is_version_option

PRECEDENCE = " > ".join(a.value for a in sorted(Action, key=lambda a: a.precedence))


@dataclass(frozen=True)
class Explanation:
    source: str  # file the object came from
    kind: str
    name: str
    operation: str
    target: NFSTarget | None
    matched: tuple[CompiledRule, ...]
    deciding: CompiledRule | None
    reason: str
    decision: Decision


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        if isinstance(meta.get("name"), str) and meta["name"]:
            return str(meta["name"])
        if isinstance(meta.get("generateName"), str):
            return f"{meta['generateName']}*"
    return "?"


def precedence_reason(matched: Sequence[CompiledRule], deciding: CompiledRule) -> str:
    """Why ``deciding`` won among ``matched`` (it is ``min(matched, key=rank)``)."""
    others = [c for c in matched if c is not deciding]
    if not others:
        return "the only matching rule"
    action = deciding.rule.action
    parts: list[str] = []
    beaten = sorted(
        {c.rule.action for c in others if c.rule.action is not action},
        key=lambda a: a.precedence,
    )
    if beaten:
        parts.append(
            f"{action.value} outranks {', '.join(a.value for a in beaten)} "
            f"(precedence {PRECEDENCE})"
        )
    peers = [c for c in others if c.rule.action is action]
    if peers:
        parts.append(
            f"first of {len(peers) + 1} matching {action.value} rules in load order "
            "(policy file name order, then rule order)"
        )
    return "; ".join(parts)


def explain(
    engine: Engine,
    obj: Mapping[str, Any],
    decision: Decision,
    *,
    inventory: NodeInventory,
    source: str = "",
    operation: str = "CREATE",
) -> Explanation:
    """Explain ``decision`` (made by ``webhook.admission.handler.decide`` for ``obj``)."""
    kind, name = str(obj.get("kind", "?")), _name(obj)
    target = engine.read(obj) if decision.outcome is not Outcome.IGNORED else None
    if target is None:
        return Explanation(
            source, kind, name, operation, None, (), None, "not an NFS object in scope", decision
        )
    matched, _ = engine.matching(target, inventory)
    by_ref = {c.ref: c for c in matched}
    deciding = by_ref.get(decision.deciding) if decision.deciding is not None else None
    if not target.effective_version().affected:
        reason = "the effective version is safe: the object is compliant and no rule acts"
    elif not matched:
        reason = "no rule matches: nfsguard leaves the object alone"
    elif deciding is not None:
        reason = precedence_reason(matched, deciding)
    else:
        reason = ""
    return Explanation(
        source, kind, name, operation, target, tuple(matched), deciding, reason, decision
    )


def _rule_json(c: CompiledRule, deciding: CompiledRule | None) -> dict[str, Any]:
    pos = c.rule.position
    return {
        **c.ref.to_dict(),
        "order": c.order,
        "deciding": c is deciding,
        "description": c.rule.description,
        "references": list(c.rule.references),
        "defined": str(pos) if pos is not None else "",
    }


def to_json(e: Explanation) -> dict[str, Any]:
    """The machine form; every key is always present (null or empty when not known)."""
    d, t = e.decision, e.target
    places: list[dict[str, Any]] = []
    ev: dict[str, Any] | None = None
    if t is not None:
        for p in t.places:
            places.append(
                {
                    "place": p.label,
                    "pointer": p.pointer,
                    "present": p.present,
                    "nodeReads": p.node_reads,
                    "mutable": p.mutable,
                    "entries": list(p.entries),
                    "versionOptions": [o for o in p.options if is_version_option(o)],
                }
            )
        eff = t.effective_version()
        ev = {
            "version": eff.version,
            "kind": eff.kind.value,
            "affected": eff.affected,
            "options": list(eff.options),
            "description": eff.describe(),
        }
    return {
        "source": e.source,
        "kind": e.kind,
        "name": e.name,
        "operation": e.operation,
        "inScope": t is not None,
        "driver": t.driver if t else None,
        "provisioner": t.provisioner if t else None,
        "server": t.server if t else None,
        "path": t.path if t else None,
        "storageClass": t.storage_class if t else None,
        "optionPlaces": places,
        "pinPlace": t.pin_place if t else None,
        "serverVersions": sorted(t.versions) if t else None,
        "driverPins": t.pin_mode.value if t else None,
        "nodeOptions": t.node_options() if t else [],
        "effectiveVersion": ev,
        "nodeScope": str(t.scope) if t else None,
        "nodes": d.nodes,
        "matched": [_rule_json(c, e.deciding) for c in e.matched],
        "deciding": (
            {**_rule_json(e.deciding, e.deciding), "reason": e.reason}
            if e.deciding is not None
            else None
        ),
        "reason": e.reason,
        "outcome": d.outcome.value,
        "allowed": d.allowed,
        "message": d.message,
        "warnings": list(d.warnings),
        "notes": list(d.notes),
        "after": d.after.to_dict() if d.after is not None else None,
        "patch": [dict(op) for op in d.patch],
    }


def _opts(options: Sequence[str]) -> str:
    return ",".join(options) if options else "(none)"


def to_text(e: Explanation) -> str:
    """The human form: one labelled line per fact, rules and patch indented."""
    d, t = e.decision, e.target
    head = f"{e.kind}/{e.name}" + (f" ({e.source})" if e.source else "")
    lines = [head]
    if t is None:
        lines.append(f"  outcome:     {d.outcome.value} ({e.reason})")
        return "\n".join(lines)
    export = f"{t.server}:{t.path}" if t.server and t.path else (t.server or "(no server known)")
    lines.append(
        f"  driver:      {t.driver}" + (f" (provisioner {t.provisioner})" if t.provisioner else "")
    )
    lines.append(f"  export:      {export}")
    speaks = ", ".join(sorted(t.versions))
    never = "; never pinned: the driver sets the version" if t.pin_mode.value == "never" else ""
    lines.append(f"  servers:     speak NFS {speaks}{never}")
    if t.storage_class:
        lines.append(f"  class:       {t.storage_class}")
    lines.append("  options:")
    for p in t.places:
        flags = []
        if p.node_reads:
            flags.append("node reads")
        if p.label == t.pin_place:
            flags.append("pin goes here")
        if not p.mutable:
            flags.append("immutable")
        state = _opts(p.options) if p.present else "(absent)"
        suffix = f"  [{', '.join(flags)}]" if flags else ""
        lines.append(f"    {p.label:<40} {state}{suffix}")
    eff = t.effective_version()
    lines.append(f"  node mounts: {_opts(t.node_options())}")
    lines.append(f"  version:     {eff.describe()}: {'affected' if eff.affected else 'safe'}")
    if t.scope.terms is not None or d.nodes:
        lines.append(f"  node scope:  {t.scope}")
    if d.nodes:
        lines.append(f"  nodes:       {d.nodes}")
    if e.matched:
        lines.append(f"  matched ({len(e.matched)}):")
        for c in e.matched:
            mark = "  <- decides" if c is e.deciding else ""
            lines.append(
                f"    {c.policy.name} {c.policy.version} / {c.rule.name}: "
                f"{c.rule.action.value}{mark}"
            )
    else:
        lines.append("  matched:     no rule")
    if e.deciding is not None:
        lines.append(
            f"  decided by:  {e.deciding.policy.name}/{e.deciding.rule.name} "
            f"({e.deciding.rule.action.value}): {e.reason}"
        )
    elif e.reason:
        lines.append(f"  why:         {e.reason}")
    lines.append(f"  outcome:     {d.outcome.value}")
    if d.message:
        lines.append(f"  message:     {d.message}")
    for w in d.warnings:
        lines.append(f"  warning:     {w}")
    for n in d.notes:
        lines.append(f"  note:        {n}")
    if d.patch:
        if d.after is not None:
            safe = "affected" if d.after.affected else "safe"
            lines.append(f"  after:       {d.after.version} ({d.after.kind}): {safe}")
        lines.append("  patch:")
        for op in d.patch:
            value = f" {json.dumps(op['value'])}" if "value" in op else ""
            lines.append(f"    {op['op']} {op['path']}{value}")
    return "\n".join(lines)
