"""What nfsguard says about an object that already exists: one of five verdicts.

``classify`` reads the trace of reviewing the object as a CREATE of it as it stands
(``Engine.evaluate``: what the policy says about it today) and decides whether the
fix can reach it through the API. Pure: ``nfsguard scan``/``remediate`` (webhook/cli)
and the reporter that keeps OpenReports current all read this one function.

Verdicts (docs/after-an-incident.md, webhook/data/scan-output.schema.json):

- ``compliant``: admission would admit it unchanged (safe version, no rule, or a
  warn/audit rule: ``outcome`` tells which);
- ``fixable``: the deciding pin rule would patch it, and every field that patch
  writes may change on UPDATE; ``patch`` is that JSON patch, planned by the same
  ``pin_plan`` as an UPDATE review (webhook/engine/pin.py);
- ``not-fixable-in-place``: the pin has to write or clean a field that is immutable
  after creation (a PV's volume source, ``csi.volumeAttributes``: "spec.persistentvolumesource
  is immutable after creation", pkg/apis/core/validation/validation.go; a StorageClass's
  ``parameters``, pkg/apis/storage/validation/validation.go); ``way_out`` says what to do;
- ``denied``: a deny rule (or a pin the driver cannot take, ``onUnsupportedPin: deny``)
  refuses it;
- ``exempt``: an exempt rule covers it.

Pods and workloads (webhook/engine/pod_volumes.py) are never ``fixable``: a csi
inline volume nfsguard would pin is ``not-fixable-in-place`` with the way out through
the manifest (``pod_way_out``), and an inline ``nfs`` volume a rule refuses is
``denied``.

A version in csi-driver-nfs ``volumeAttributes.mountOptions`` plus a pin in
``spec.mountOptions`` would be two version options (the driver appends the attribute
after the flags, nodeserver.go; nfs-utils >= 2.5.3 refuses the mount): the plan must
strip the attribute, which UPDATE cannot, so such a PV is never ``fixable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from webhook.api.decision import Outcome
from webhook.api.patch import PatchOperation
from webhook.api.target import NFSTarget
from webhook.engine.engine import Evaluation
from webhook.engine.pin import PinIncomplete, PinRefused, check_pin, pin_plan


class ScanVerdict(StrEnum):
    COMPLIANT = "compliant"
    FIXABLE = "fixable"
    NOT_FIXABLE = "not-fixable-in-place"
    DENIED = "denied"
    EXEMPT = "exempt"

    @property
    def at_risk(self) -> bool:
        """Whether the object needs someone: it is fixed, recreated, or refused."""
        return self in _AT_RISK


_AT_RISK = frozenset({ScanVerdict.FIXABLE, ScanVerdict.NOT_FIXABLE, ScanVerdict.DENIED})

#: Verdicts in the order a report lists them (most urgent first).
VERDICT_ORDER = (
    ScanVerdict.NOT_FIXABLE,
    ScanVerdict.FIXABLE,
    ScanVerdict.DENIED,
    ScanVerdict.EXEMPT,
    ScanVerdict.COMPLIANT,
)


@dataclass(frozen=True)
class Classification:
    """The verdict on one existing object and what it rests on."""

    verdict: ScanVerdict
    evaluation: Evaluation
    #: The JSON patch that fixes it in place (``fixable`` only; applies to the object
    #: as it was read, so ``remediate`` adds a resourceVersion precondition).
    patch: tuple[PatchOperation, ...] | None
    #: Why this verdict, in one sentence.
    reason: str
    #: For ``not-fixable-in-place``: the safe procedure for this driver; else "".
    way_out: str = ""

    @property
    def target(self) -> NFSTarget:
        assert self.evaluation.target is not None  # classify returns None out of scope
        return self.evaluation.target

    @property
    def covered(self) -> bool:
        """Whether any rule matches the object (False: nobody has written one yet)."""
        return bool(self.evaluation.matched)


def classify(evaluation: Evaluation) -> Classification | None:
    """The verdict on the object ``evaluation`` (a CREATE review of it as it stands)
    traces; None when the object is out of scope (not NFS)."""
    target = evaluation.target
    if target is None:
        return None
    outcome = evaluation.outcome
    d = evaluation.decision
    if outcome is Outcome.EXEMPT:
        return Classification(ScanVerdict.EXEMPT, evaluation, None, d.message)
    if outcome is Outcome.DENIED:
        return Classification(ScanVerdict.DENIED, evaluation, None, d.message)
    if outcome is not Outcome.MUTATED:
        return Classification(
            ScanVerdict.COMPLIANT, evaluation, None, _compliant_reason(evaluation)
        )
    deciding = evaluation.deciding
    assert deciding is not None  # a mutation always has a deciding rule
    pin = deciding.policy.pin
    if evaluation.volumes:  # a Pod or workload: its manifest is where the fix lives
        return Classification(
            ScanVerdict.NOT_FIXABLE, evaluation, None, d.message, pod_way_out(target, pin)
        )
    try:
        plan = pin_plan(target, pin, "UPDATE")
    except PinRefused as exc:
        return Classification(
            ScanVerdict.NOT_FIXABLE,
            evaluation,
            None,
            f"{deciding.who} would pin nfsvers={pin}, but {exc}",
            way_out(target, pin),
        )
    except PinIncomplete as exc:  # CREATE planned it, so UPDATE would too: kept for safety
        return Classification(
            ScanVerdict.NOT_FIXABLE, evaluation, None, str(exc), way_out(target, pin)
        )
    _, wrong = check_pin(target, plan, pin)
    if wrong is not None or not plan.ops:
        why = wrong or "the update plan changes nothing"
        return Classification(ScanVerdict.NOT_FIXABLE, evaluation, None, why, way_out(target, pin))
    return Classification(ScanVerdict.FIXABLE, evaluation, tuple(plan.ops), d.message)


def volume_classifications(c: Classification) -> tuple[Classification, ...]:
    """The verdict on each inline NFS volume of a Pod or workload (its ``volumes`` trace,
    in ``spec.volumes`` order); () for a PV or StorageClass. A volume nfsguard would pin
    is ``not-fixable-in-place`` (the manifest is where the fix lives), as the object is."""
    found = []
    for v in c.evaluation.volumes:
        if v.target is None:
            continue
        outcome = v.outcome
        if outcome is Outcome.EXEMPT:
            found.append(Classification(ScanVerdict.EXEMPT, v, None, v.decision.message))
        elif outcome is Outcome.DENIED:
            found.append(Classification(ScanVerdict.DENIED, v, None, v.decision.message))
        elif outcome is Outcome.MUTATED and v.deciding is not None:
            pin = v.deciding.policy.pin
            found.append(
                Classification(
                    ScanVerdict.NOT_FIXABLE,
                    v,
                    None,
                    v.decision.message,
                    pod_way_out(v.target, pin),
                )
            )
        else:
            found.append(Classification(ScanVerdict.COMPLIANT, v, None, _compliant_reason(v)))
    return tuple(found)


def _compliant_reason(evaluation: Evaluation) -> str:
    d = evaluation.decision
    if d.outcome in (Outcome.WARNED, Outcome.AUDITED):
        return f"admitted unchanged ({d.outcome.value}): {d.message}"
    return evaluation.reason


def way_out(target: NFSTarget, pin: str) -> str:
    """The safe procedure for an object whose fix needs a field UPDATE cannot change,
    per driver (docs/after-an-incident.md spells each out with commands)."""
    option = f"nfsvers={pin}"
    name = target.name
    if target.kind == "StorageClass":
        return (
            f"StorageClass parameters are immutable: save it (kubectl get sc {name} -o yaml), "
            f"delete it and create it again with the same name and {option} where the driver "
            f"reads it ({target.pin_place or 'its mount options'}); PVs it provisioned keep "
            "their options and are fixed (or recreated) one by one"
        )
    if target.driver == "longhorn":
        return (
            f"the nfsOptions volume attribute is immutable and replaces the driver's defaults: "
            f"fix the StorageClass's nfsOptions (the complete set with {option}), then "
            f"re-provision the volume (new PVC, copy the data), or recreate PV {name} as for "
            "csi-driver-nfs with the complete nfsOptions set"
        )
    return (
        f"the volume source (spec.csi.volumeAttributes) is immutable; recreate PV {name}: "
        f'1. kubectl patch pv {name} -p \'{{"spec":{{"persistentVolumeReclaimPolicy":'
        f'"Retain"}}}}\' (so nothing deletes the data); 2. kubectl get pv {name} -o yaml > '
        f"{name}.yaml; 3. stop the pods using it; kubectl delete pv {name} --wait=false and "
        f'kubectl patch pv {name} --type=merge -p \'{{"metadata":{{"finalizers":null}}}}\' '
        "(pv-protection holds a bound PV); 4. in the file drop uid, resourceVersion, "
        "creationTimestamp and status, keep spec.claimRef (namespace, name, uid), put "
        f"{option} in spec.mountOptions and no version option in volumeAttributes.mountOptions; "
        f"kubectl create -f {name}.yaml (the PVC binds again); 5. restore the reclaim policy"
    )


def pod_way_out(target: NFSTarget, pin: str) -> str:
    """The procedure for a Pod or workload whose inline csi volume would be pinned: never
    patched in place (a live workload patched by hand is overwritten by its next apply and
    rolled out by surprise; a Pod's volumes and a Job's template never change)."""
    option = f"nfsvers={pin}"
    where = f"volumeAttributes.mountOptions of volume {target.volume}"
    if target.kind == "Pod":
        return (
            f"a Pod's volumes never change: put {option} in {where} of the template or "
            f"manifest it comes from (nfsguard pins it at admission anyway), then delete Pod "
            f"{target.name} so its controller creates it again"
        )
    if target.kind == "Job":
        return (
            f"a Job's template never changes: put {option} in {where} of its manifest and "
            f"create Job {target.name} again"
        )
    return (
        f"put {option} in {where} of {target.kind} {target.name}'s manifest and apply it "
        "(nfsguard pins it at admission anyway): its controller rolls the pods out with it"
    )
