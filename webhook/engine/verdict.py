"""Which matching rule decides, what its action does, and the words for it.

Precedence: exempt > deny > pin > warn > audit, then load order (policy file name
order, then rule order); the lowest ``CompiledRule.rank`` decides. A pin is never
one the driver cannot take (``onUnsupportedPin``: warn or deny), never written to
a field that cannot change on UPDATE (a warning instead), and never a patch the
node would not mount as exactly the pin (webhook/engine/pin.py checks it).
Warnings are cut to what kubectl shows whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from webhook.api.decision import Action, Outcome
from webhook.api.kube import Operation
from webhook.api.patch import PatchOperation
from webhook.api.policy import OnExplicit, OnUnsupportedPin, Rule
from webhook.api.target import NFSTarget
from webhook.engine.index import CompiledRule
from webhook.engine.pin import PinIncomplete, PinRefused, check_pin, pin_plan
from webhook.nfs.options import EffectiveVersion, VersionKind, pin_option

_MAX_WARNING = 119  # kubectl shows warnings whole under 120 characters

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
    if action is Action.EXEMPT:
        return Verdict(Outcome.EXEMPT, f"exempt by {who}")
    if action is Action.AUDIT:
        return Verdict(Outcome.AUDITED, f"NFS {seen} for {export} audited by {who}")
    if action is Action.WARN:
        warning = _short(
            f"nfsguard: NFS {seen} on {export} is at risk ({rule.name}); consider {pin}"
        )
        return Verdict(Outcome.WARNED, f"NFS {seen} for {export} warned by {who}", (warning,))
    unsupported = target.can_take(policy.pin)
    if action is Action.DENY:
        return Verdict(
            Outcome.DENIED,
            f"{who} does not allow NFS {seen} for {export}: {_fix(pin, unsupported)}",
        )
    # pin: never one the driver cannot take (webhook.api.profile profiles)
    if unsupported is not None:
        return _unsupported_pin(rule, who, target, export, policy.pin, unsupported)
    explicit = ev.kind in (VersionKind.EXPLICIT, VersionKind.CONFLICTING)
    if rule.on_explicit is OnExplicit.DENY and explicit:
        return Verdict(
            Outcome.DENIED,
            f"{who} does not allow the explicit NFS {seen} for {export}: {_fix(pin, unsupported)}",
        )
    try:
        plan = pin_plan(target, policy.pin, operation)
    except PinRefused as exc:
        warning = _short(
            f"nfsguard: cannot pin {target.kind} {target.name} on update ({rule.name}); "
            f"recreate it with {pin}"
        )
        return Verdict(Outcome.WARNED, f"{who} would pin {pin}, but {exc}", (warning,))
    except PinIncomplete as exc:
        advice = target.pin_advice or (
            f"give the complete option set with {pin} in the object's mount options"
        )
        return Verdict(
            Outcome.DENIED,
            f"{who} would pin {pin} for {export}, but {exc}: {advice}",
            notes=(f"incomplete pin: {exc}",),
        )
    if not plan.ops:
        return Verdict(Outcome.COMPLIANT, f"already pinned by {who}")
    after, wrong = check_pin(target, plan, policy.pin)
    if wrong is not None:
        return _unsupported_pin(rule, who, target, export, policy.pin, wrong)
    old = ",".join(ev.options) or "no version"
    warning = _short(
        f"nfsguard: {old} -> {pin} by rule {rule.name} ({policy.name} {policy.version})"
    )
    return Verdict(
        Outcome.MUTATED,
        f"{who} pinned {pin} for {export} (was NFS {seen})",
        (warning,),
        tuple(plan.ops),
        after,
    )


def _fix(pin: str, unsupported: str | None) -> str:
    """How to comply with a denial; never a version the driver's servers cannot take."""
    if unsupported is not None:
        return f"{unsupported}; exempt this driver or narrow the rule"
    return f"set {pin} in mountOptions and remove every other version option"


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
        return Verdict(Outcome.DENIED, f"{message} (onUnsupportedPin: deny)", notes=(note,))
    warning = _short(
        f"nfsguard: {pin_option(pin)} not pinned on {target.driver} ({rule.name}): "
        f"its servers cannot take it"
    )
    return Verdict(
        Outcome.WARNED,
        f"{message}; allowed unchanged (onUnsupportedPin: warn)",
        (warning,),
        notes=(note,),
    )


def _short(text: str) -> str:
    clean = text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)
    return clean if len(clean) <= _MAX_WARNING else clean[: _MAX_WARNING - 3] + "..."


def summary_export(target: NFSTarget) -> str:
    """The export as messages name it: ``server:path``, or what is known of it."""
    if target.server is None:
        return f"{target.kind} {target.name} (no export known)"
    return f"{target.server}:{target.path}" if target.path else target.server
