"""Which matching rule decides, what its action does, and the words for it.

Precedence: exempt > deny > pin > warn > audit, then load order (policy file name
order, then rule order); the lowest ``CompiledRule.rank`` decides. A pin is never
one the driver cannot take (``onUnsupportedPin``: warn or deny), never written to
a field that cannot change on UPDATE (a warning instead), and never a patch the
node would not mount as exactly the pin (webhook/engine/pin.py checks it).

``settle`` then applies what only the request can say, after precedence (so it
never changes which rule wins, only what the winner does):

- an UPDATE whose NFS options are those of its oldObject is never denied: it is
  allowed with a warning (Kyverno's ``allowExistingViolations``; a PV's binding and
  finalizer removal are UPDATEs, kubernetes pkg/controller/volume/persistentvolume);
  a pin on it is still written where the field may change;
- ``Audit`` enforcement admits the object unchanged with a warning, and keeps what
  Enforce would have done (``would_be``, ``would_patch``).

Warnings are built to fit kubectl's line (webhook/engine/advice.py), never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from webhook.api.decision import Action, Enforcement, Outcome
from webhook.api.kube import Operation
from webhook.api.patch import PatchOperation
from webhook.api.policy import OnExplicit, OnInline, OnUnsupportedPin, Rule
from webhook.api.target import NFSTarget
from webhook.engine.advice import nfs_words, short_version, warning
from webhook.engine.index import CompiledRule
from webhook.engine.inline import pv_way_out
from webhook.engine.pin import PinIncomplete, PinRefused, check_pin, pin_plan
from webhook.nfs.options import EffectiveVersion, VersionKind, pin_option

#: The precedence of actions, as messages and ``policy explain`` spell it.
PRECEDENCE = " > ".join(a.value for a in sorted(Action, key=lambda a: a.precedence))


class Verdict(NamedTuple):
    """What the deciding rule did; ``Engine.evaluate`` adds what every decision carries."""

    outcome: Outcome
    message: str
    warnings: tuple[str, ...] = ()
    patch: tuple[PatchOperation, ...] = ()
    after: EffectiveVersion | None = None  # None: unchanged
    notes: tuple[str, ...] = ()
    #: What to do, in bounded words (webhook/engine/advice.py): what a warning says
    #: when ``settle`` admits a denial or a pin unchanged.
    advice: str = ""
    enforcement: Enforcement | None = None
    would_be: Outcome | None = None
    would_patch: tuple[PatchOperation, ...] = ()
    existing: bool = False


def _rank(c: CompiledRule) -> tuple[int, int]:
    return c.rank


def deciding_rule(matched: Sequence[CompiledRule]) -> CompiledRule:
    """The rule that decides among ``matched`` (not empty): the lowest rank."""
    return min(matched, key=_rank)


def precedence_reason(matched: Sequence[CompiledRule], deciding: CompiledRule) -> str:
    """Why ``deciding`` won among ``matched`` (it is ``deciding_rule(matched)``)."""
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


def act(
    deciding: CompiledRule, target: NFSTarget, ev: EffectiveVersion, operation: Operation
) -> Verdict:
    """What ``deciding`` does to an object whose effective version ``ev`` is affected."""
    rule, policy, who = deciding.rule, deciding.policy, deciding.who
    pin = pin_option(policy.pin)
    export = summary_export(target)
    seen = ev.describe()
    action = rule.action
    kind, name = target.kind, target.display_name
    if action is Action.EXEMPT:
        return Verdict(Outcome.EXEMPT, f"exempt by {who}")
    if action is Action.AUDIT:
        return Verdict(Outcome.AUDITED, f"NFS {seen} for {export} audited by {who}")
    if action is Action.WARN:
        advice = f"consider {pin}: {nfs_words(ev)} is at risk"
        return Verdict(
            Outcome.WARNED,
            f"NFS {seen} for {export} warned by {who}",
            (warning(advice, kind, name, rule.name),),
        )
    if target.inline == "nfs" and action is Action.DENY:
        return Verdict(
            Outcome.DENIED,
            f"{who} does not allow NFS {seen} for {export} in {kind}/{name}: "
            + pv_way_out(target, policy.pin),
            advice=f"mount via a PV with {pin}",
        )
    if target.inline == "nfs":  # a pin rule: an inline nfs volume has no option place
        return _inline(rule, policy.on_inline_of(rule), who, target, export, seen, pin, policy.pin)
    unsupported = target.can_take(policy.pin)
    if action is Action.DENY:
        return Verdict(
            Outcome.DENIED,
            f"{who} does not allow NFS {seen} for {export}{_in(target)}: "
            f"{_fix(pin, unsupported, target)}",
            advice=_fix_advice(pin, unsupported),
        )
    # pin: never one the driver cannot take (webhook.api.profile profiles)
    if unsupported is not None:
        return _unsupported_pin(rule, who, target, export, policy.pin, unsupported)
    explicit = ev.kind in (VersionKind.EXPLICIT, VersionKind.CONFLICTING)
    if rule.on_explicit is OnExplicit.DENY and explicit:
        return Verdict(
            Outcome.DENIED,
            f"{who} does not allow the explicit NFS {seen} for {export}{_in(target)}: "
            f"{_fix(pin, unsupported, target)}",
            advice=_fix_advice(pin, unsupported),
        )
    try:
        plan = pin_plan(target, policy.pin, operation)
    except PinRefused as exc:
        advice = f"recreate it with {pin}: its options cannot change"
        return Verdict(
            Outcome.WARNED,
            f"{who} would pin {pin}, but {exc}",
            (warning(advice, kind, name, rule.name),),
        )
    except PinIncomplete as exc:
        advice = target.pin_advice or (
            f"give the complete option set with {pin} in the object's mount options"
        )
        return Verdict(
            Outcome.DENIED,
            f"{who} would pin {pin} for {export}, but {exc}: {advice}",
            notes=(f"incomplete pin: {exc}",),
            advice=f"set {pin} + all options",
        )
    if not plan.ops:
        return Verdict(Outcome.COMPLIANT, f"already pinned by {who}")
    after, wrong = check_pin(target, plan, policy.pin)
    if wrong is not None:
        return _unsupported_pin(rule, who, target, export, policy.pin, wrong)
    advice = f"add {pin} to the manifest (pinned, was {short_version(ev)})"
    return Verdict(
        Outcome.MUTATED,
        f"{who} pinned {pin} for {export}{_in(target)} (was NFS {seen})",
        (warning(advice, kind, name, rule.name),),
        tuple(plan.ops),
        after,
        advice=f"set {pin} in mountOptions",
    )


def settle(
    verdict: Verdict,
    deciding: CompiledRule,
    target: NFSTarget,
    *,
    existing: bool,
) -> Verdict:
    """``verdict`` as the request lets it stand: an existing violation (``existing``:
    an UPDATE whose NFS options are those of its oldObject) is never denied, and
    Audit enforcement admits pins and denials unchanged, keeping what Enforce would
    have done. Both only ever allow more, and are recorded (outcome ``warned``)."""
    enforcement = deciding.policy.enforcement_of(deciding.rule)
    rule = deciding.rule.name
    v = verdict._replace(enforcement=enforcement, existing=existing)
    if existing and v.outcome is Outcome.DENIED:
        v = v._replace(
            outcome=Outcome.WARNED,
            message=f"{v.message}; allowed: an UPDATE that keeps the NFS options of the "
            "existing object is never denied",
            warnings=(
                *v.warnings,
                warning(
                    f"{v.advice} (allowed: options unchanged)",
                    target.kind,
                    target.display_name,
                    rule,
                ),
            ),
            notes=(*v.notes, "existing object: options unchanged"),
        )
    elif existing:
        v = v._replace(notes=(*v.notes, "existing object: options unchanged"))
    if enforcement is Enforcement.AUDIT and v.outcome in (Outcome.MUTATED, Outcome.DENIED):
        would, done = (
            ("pin it", "pinned") if v.outcome is Outcome.MUTATED else ("deny it", "denied")
        )
        v = v._replace(
            outcome=Outcome.WARNED,
            message=f"audit: Enforce would have {done}: {v.message}",
            warnings=(
                warning(
                    f"{v.advice} (audit: would {would})", target.kind, target.display_name, rule
                ),
            ),
            patch=(),
            after=None,
            would_be=v.outcome,
            would_patch=v.patch,
            notes=(*v.notes, f"enforcement Audit: would be {v.outcome.value}"),
        )
    return v


def _in(target: NFSTarget) -> str:
    """Where a pod volume is, in a message ("" for a PV or StorageClass)."""
    return f" in {target.kind}/{target.display_name}" if target.volume else ""


def _fix(pin: str, unsupported: str | None, target: NFSTarget | None = None) -> str:
    """How to comply with a denial; never a version the driver's servers cannot take."""
    if unsupported is not None:
        return f"{unsupported}; exempt this driver or narrow the rule"
    if target is not None and target.inline == "csi":
        return (
            f"set {pin} in volumeAttributes.mountOptions of volume {target.volume} "
            "and remove every other version option"
        )
    return f"set {pin} in mountOptions and remove every other version option"


def _inline(
    rule: Rule,
    on_inline: OnInline,
    who: str,
    target: NFSTarget,
    export: str,
    seen: str,
    pin: str,
    version: str,
) -> Verdict:
    """A pin rule on an inline nfs volume, which can never be pinned: ``onInline``."""
    kind, name = target.kind, target.display_name
    where = f"{kind}/{name}"
    note = f"inline nfs volume {target.volume}: no mount option place, {pin} not applied"
    if on_inline is OnInline.DENY:
        return Verdict(
            Outcome.DENIED,
            f"{who} pins {pin} for {export}, but {where} mounts it inline, where no "
            f"version can be set (onInline: deny): " + pv_way_out(target, version),
            notes=(note,),
            advice=f"mount via a PV with {pin}",
        )
    if on_inline is OnInline.WARN:
        return Verdict(
            Outcome.WARNED,
            f"{who} would pin {pin} for {export}, but {where} mounts it inline "
            f"(NFS {seen}, no place for options); allowed unchanged (onInline: warn)",
            (warning(f"mount via a PersistentVolume with {pin}", kind, name, rule.name),),
            notes=(note,),
        )
    return Verdict(
        Outcome.AUDITED,
        f"{who} would pin {pin} for {export}, but {where} mounts it inline "
        f"(NFS {seen}, no place for options); allowed unchanged (onInline: audit)",
        notes=(note,),
    )


def _fix_advice(pin: str, unsupported: str | None) -> str:
    """``_fix`` in the bounded words of a warning."""
    if unsupported is not None:
        return "ask to exempt its driver"
    return f"set {pin} in mountOptions"


def _unsupported_pin(
    rule: Rule,
    who: str,
    target: NFSTarget,
    export: str,
    pin: str,
    reason: str,
) -> Verdict:
    """A pin the driver cannot take is never written: deny or warn (onUnsupportedPin)."""
    note = f"unsupported pin: {pin_option(pin)} not applied: {reason}"
    advice = f"; {target.pin_advice}" if target.pin_advice else ""
    message = f"{who} would pin {pin_option(pin)} for {export}, but {reason}{advice}"
    if rule.on_unsupported_pin is OnUnsupportedPin.DENY:
        return Verdict(
            Outcome.DENIED,
            f"{message} (onUnsupportedPin: deny)",
            notes=(note,),
            advice=_fix_advice(pin_option(pin), reason),
        )
    advice = f"ask to exempt its driver: it cannot take {pin_option(pin)}"
    return Verdict(
        Outcome.WARNED,
        f"{message}; allowed unchanged (onUnsupportedPin: warn)",
        (warning(advice, target.kind, target.display_name, rule.name),),
        notes=(note,),
    )


def summary_export(target: NFSTarget) -> str:
    """The export as messages name it: ``server:path``, or what is known of it."""
    if target.server is None:
        return f"{target.kind} {target.name} (no export known)"
    return f"{target.server}:{target.path}" if target.path else target.server
