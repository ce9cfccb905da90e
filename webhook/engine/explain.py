"""``nfsguard policy explain``: why nfsguard decides what it decides about an object.

An explanation puts side by side what the engine reads from the object (driver,
export, every place mount options live and which one the node reads, the
effective version), every rule that matched, which one decided and why
(precedence), and the decision itself (outcome, message, patch). All of it is
read from one ``Evaluation`` (webhook/engine/engine.py), the trace of the same
review the server makes: an explanation cannot disagree with the decision.

The JSON form (``to_json``) is documented in docs/policy-authoring.md; its keys
are stable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.api.decision import Enforcement
from webhook.api.kube import object_name
from webhook.engine.engine import Evaluation
from webhook.engine.index import CompiledRule
from webhook.nfs.options import is_version_option


@dataclass(frozen=True)
class Explanation:
    source: str  # file the object came from
    kind: str
    name: str
    operation: str
    evaluation: Evaluation


def _name(obj: Mapping[str, Any]) -> str:
    return object_name(obj) or "?"


def explain(
    evaluation: Evaluation,
    obj: Mapping[str, Any],
    *,
    source: str = "",
    operation: str = "CREATE",
) -> Explanation:
    """Explain ``evaluation``, the trace of reviewing ``obj`` (made by
    ``webhook.admission.handler.evaluate``, as a served review is)."""
    return Explanation(source, str(obj.get("kind", "?")), _name(obj), operation, evaluation)


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
    trace = e.evaluation
    d, t, deciding, reason = trace.decision, trace.target, trace.deciding, trace.reason
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
        eff = trace.effective
        assert eff is not None  # every target read has one
        ev = {**eff.to_dict(), "description": eff.describe()}
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
        "nodes": trace.nodes,
        "matched": [_rule_json(c, deciding) for c in trace.matched],
        "deciding": (
            {**_rule_json(deciding, deciding), "reason": reason} if deciding is not None else None
        ),
        "reason": reason,
        "outcome": trace.outcome.value,
        "allowed": d.allowed,
        "message": d.message,
        "warnings": list(d.warnings),
        "notes": list(d.notes),
        "after": d.after.to_dict() if d.after is not None else None,
        "patch": [dict(op) for op in trace.patch],
        "enforcement": d.enforcement.value if d.enforcement is not None else None,
        "wouldBe": d.would_be.value if d.would_be is not None else None,
        "wouldPatch": [dict(op) for op in d.would_patch],
        "existing": d.existing,
        # Pods and workloads: the deciding volume, and each inline NFS volume's own trace
        "volume": t.volume or None if t else None,
        "inline": t.inline or None if t else None,
        "volumes": [
            to_json(Explanation(e.source, e.kind, e.name, e.operation, part))
            for part in trace.volumes
        ],
    }


def _opts(options: Sequence[str]) -> str:
    return ",".join(options) if options else "(none)"


def to_text(e: Explanation) -> str:
    """The human form: one labelled line per fact, rules and patch indented."""
    trace = e.evaluation
    d, t, reason = trace.decision, trace.target, trace.reason
    head = f"{e.kind}/{e.name}" + (f" ({e.source})" if e.source else "")
    lines = [head]
    if t is None:
        lines.append(f"  outcome:     {trace.outcome.value} ({reason})")
        return "\n".join(lines)
    if trace.volumes:
        for part in trace.volumes:
            pt = part.target
            assert pt is not None  # every volume part has the target it read
            lines.append(f"  volume {pt.volume} ({pt.inline} inline): {part.outcome.value}")
            lines.extend("  " + line for line in _target_lines(part))
    else:
        lines.extend(_target_lines(trace))
    lines.append(f"  outcome:     {trace.outcome.value}")
    if d.enforcement is Enforcement.AUDIT:
        would = f" (Enforce would: {d.would_be.value})" if d.would_be is not None else ""
        lines.append(f"  enforcement: {d.enforcement.value}{would}")
    if d.existing:
        lines.append("  existing:    yes: the NFS options are those of the old object")
    if d.message:
        lines.append(f"  message:     {d.message}")
    for w in d.warnings:
        lines.append(f"  warning:     {w}")
    for n in d.notes:
        lines.append(f"  note:        {n}")
    if trace.patch:
        if d.after is not None:
            safe = "affected" if d.after.affected else "safe"
            lines.append(f"  after:       {d.after.version} ({d.after.kind}): {safe}")
        lines.append("  patch:")
        for op in trace.patch:
            value = f" {json.dumps(op['value'])}" if "value" in op else ""
            lines.append(f"    {op['op']} {op['path']}{value}")
    if d.would_patch:
        lines.append("  would patch (not sent: Audit):")
        for op in d.would_patch:
            value = f" {json.dumps(op['value'])}" if "value" in op else ""
            lines.append(f"    {op['op']} {op['path']}{value}")
    return "\n".join(lines)


def _target_lines(trace: Evaluation) -> list[str]:
    """What was read from one target and which rules decided it (a PV, a StorageClass,
    or one volume of a Pod or workload)."""
    t, deciding, reason = trace.target, trace.deciding, trace.reason
    assert t is not None
    out: list[str] = []
    export = f"{t.server}:{t.path}" if t.server and t.path else (t.server or "(no server known)")
    out.append(
        f"  driver:      {t.driver}" + (f" (provisioner {t.provisioner})" if t.provisioner else "")
    )
    out.append(f"  export:      {export}")
    speaks = ", ".join(sorted(t.versions))
    never = "; never pinned: the driver sets the version" if t.pin_mode.value == "never" else ""
    out.append(f"  servers:     speak NFS {speaks}{never}")
    if t.storage_class:
        out.append(f"  class:       {t.storage_class}")
    out.append("  options:")
    if t.inline == "nfs":
        out.append("    (none: an inline nfs volume has no field for mount options)")
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
        out.append(f"    {p.label:<40} {state}{suffix}")
    eff = trace.effective
    assert eff is not None  # every target read has one
    out.append(f"  node mounts: {_opts(t.node_options())}")
    out.append(f"  version:     {eff.describe()}: {'affected' if eff.affected else 'safe'}")
    if t.scope.terms is not None or trace.nodes:
        out.append(f"  node scope:  {t.scope}")
    if trace.nodes:
        out.append(f"  nodes:       {trace.nodes}")
    if trace.matched:
        out.append(f"  matched ({len(trace.matched)}):")
        for c in trace.matched:
            mark = "  <- decides" if c is deciding else ""
            out.append(
                f"    {c.policy.name} {c.policy.version} / {c.rule.name}: "
                f"{c.rule.action.value}{mark}"
            )
    else:
        out.append("  matched:     no rule")
    if deciding is not None:
        out.append(
            f"  decided by:  {deciding.policy.name}/{deciding.rule.name} "
            f"({deciding.rule.action.value}): {reason}"
        )
    elif reason:
        out.append(f"  why:         {reason}")
    return out
