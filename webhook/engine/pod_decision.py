"""One decision for a Pod or workload from the decisions on each of its NFS volumes.

An AdmissionReview gets one answer, so a pod with several inline NFS volumes is
decided volume by volume (webhook/engine/pod_volumes.py, each through the same
match, act and settle as a PV) and then:

- the most severe volume outcome is the object's: denied > mutated > warned >
  audited > exempt > compliant > unmatched (the first such volume in ``spec.volumes``
  order is the "primary": its rule, versions and enforcement are the decision's);
- a denial sends no patch; otherwise the patch is every pinned volume's operations
  in volume order (each names its own volume's fields, so they never overlap);
- the message names every volume that acted (the denied ones alone when denied);
  warnings and notes of every volume are kept (duplicates once), but for the
  "pinned" warnings of volumes a denial leaves unpatched;
- ``volumes`` records each volume's outcome, export and rule for the audit trail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from webhook.api.decision import Decision, Outcome, RuleRef, VolumeDecision

#: Lower is more severe.
SEVERITY = {
    Outcome.DENIED: 0,
    Outcome.MUTATED: 1,
    Outcome.WARNED: 2,
    Outcome.AUDITED: 3,
    Outcome.EXEMPT: 4,
    Outcome.COMPLIANT: 5,
    Outcome.UNMATCHED: 6,
    Outcome.IGNORED: 7,
}


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def combine_decisions(decisions: Sequence[Decision]) -> tuple[int, Decision]:
    """(index of the primary volume, the object's decision) for ``decisions`` (one per
    volume, not empty, each with a ``target``)."""
    primary_index = min(range(len(decisions)), key=lambda i: SEVERITY[decisions[i].outcome])
    primary = decisions[primary_index]
    volumes = tuple(
        VolumeDecision(
            volume=(d.target.volume or "") if d.target else "",
            outcome=d.outcome,
            export=d.target.export if d.target else None,
            driver=d.target.driver if d.target else "",
            rule=d.deciding.rule if d.deciding else None,
        )
        for d in decisions
    )
    if len(decisions) == 1:
        return 0, _with_volumes(primary, volumes)
    denied = primary.outcome is Outcome.DENIED
    acting = [
        d
        for d in decisions
        if (d.outcome is Outcome.DENIED if denied else d.outcome.recorded) and d.message
    ]
    message = "; ".join(_unique([d.message for d in acting])) if acting else primary.message
    matched: dict[RuleRef, None] = {}
    for d in decisions:
        for ref in d.matched:
            matched.setdefault(ref, None)
    would = [d for d in decisions if d.would_be is not None]
    would_be = min(
        (d.would_be for d in would if d.would_be), key=lambda o: SEVERITY[o], default=None
    )
    decision = Decision(
        primary.outcome,
        target=primary.target,
        deciding=primary.deciding,
        matched=tuple(matched),
        before=primary.before,
        after=primary.after,
        patch=() if denied else tuple(op for d in decisions for op in d.patch),
        message=message,
        # A denied object is not patched: the pinned volumes' "pinned" warnings would lie.
        warnings=_unique(
            [
                w
                for d in decisions
                if not (denied and d.outcome is Outcome.MUTATED)
                for w in d.warnings
            ]
        ),
        nodes="; ".join(_unique([d.nodes for d in decisions])),
        notes=_unique([n for d in decisions for n in d.notes]),
        enforcement=primary.enforcement,
        would_be=would_be,
        would_patch=tuple(op for d in would for op in d.would_patch),
        existing=primary.existing,
        volumes=volumes,
    )
    return primary_index, decision


def _with_volumes(decision: Decision, volumes: tuple[VolumeDecision, ...]) -> Decision:
    return dataclasses.replace(decision, volumes=volumes)
