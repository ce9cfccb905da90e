"""``nfsguard policy lint``: every problem of a set of policy files, before they ship.

Loading (webhook.config.load) already finds everything that stops a policy from
loading (YAML syntax, the published JSON Schema, CIDRs, globs, kernel ranges,
duplicate names) and the per-rule warnings (an empty ``match``, ``onExplicit`` on a
rule that does not pin). Lint adds what needs every loaded policy at once: rules
that can never decide because an identical rule comes first, policies without
rules, and pin rules that can reach drivers that cannot take the pin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from webhook.api.decision import Action
from webhook.api.policy import Policy, Position, Rule
from webhook.api.profile import DriverProfile, PinMode
from webhook.config.documents import Problem, Severity, in_file_order
from webhook.config.load import LoadResult
from webhook.nfs.options import PINNABLE_VERSIONS, pin_option
from webhook.nfs.patterns import NamePattern


@dataclass(frozen=True)
class LintResult(LoadResult):
    """A ``LoadResult`` with the whole-set warnings, and how ``policy lint`` sums it up."""

    def failed(self, *, strict: bool = False) -> bool:
        return bool(self.errors) or (strict and bool(self.warnings))

    def summary(self, *, strict: bool = False) -> str:
        """One line: ``2 policies, 7 rules: OK`` or ``2 errors, 1 warning``."""
        if self.failed(strict=strict):
            return f"{_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')}"
        rules = sum(len(p.rules) for p in self.policies)
        line = f"{_count(len(self.policies), 'policy', 'policies')}, {_count(rules, 'rule')}: OK"
        if self.warnings:
            line += f" ({_count(len(self.warnings), 'warning')})"
        return line


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def lint(loaded: LoadResult) -> LintResult:
    """``loaded`` with the problems only the whole set shows, in file order (problems
    at one place keep their order: the loader's first)."""
    problems = [*loaded.problems, *_whole_set_problems(loaded.policies)]
    if not loaded.errors:
        # Pin rules that can reach drivers whose servers cannot take the pin.
        problems += unsafe_pin_warnings(loaded.policies, loaded.profiles)
    return LintResult(loaded.policies, loaded.profiles, tuple(in_file_order(problems)))


def _whole_set_problems(policies: Iterable[Policy]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[tuple[object, ...], tuple[Policy, Rule]] = {}
    for policy in policies:
        if not policy.rules:
            problems.append(
                Problem(
                    policy.position or Position(policy.source, 1),
                    f'policy "{policy.name}" has no rules',
                    Severity.WARNING,
                    code="no-rules",
                )
            )
        for rule in policy.rules:
            key = (rule.match, rule.exclude, rule.action, rule.on_explicit, policy.pin)
            first = seen.get(key)
            if first is None:
                seen[key] = (policy, rule)
                continue
            if "shadowed" in rule.lint_ignore:
                continue
            where = (
                f'rule "{first[1].name}"'
                if first[0] is policy
                else f'rule "{first[1].name}" of policy "{first[0].name}"'
            )
            problems.append(
                Problem(
                    rule.position or Position(policy.source, 1),
                    f'rule "{rule.name}": same match, exclude and action as {where}, '
                    "which comes first: this rule never decides",
                    Severity.WARNING,
                    code="shadowed",
                )
            )
    return problems


# ------------------------------------------------- pins that drivers cannot take


def _rule_position(policy: Policy, rule: Rule) -> Position:
    return rule.position or policy.position or Position(policy.source or "?", 1)


def _names_overlap(pattern: NamePattern, names: Sequence[NamePattern]) -> bool:
    for name in names:
        if name.glob is None and pattern.matches(name.text):
            return True
        if pattern.glob is None and name.matches(pattern.text):
            return True
        if pattern.text == name.text:
            return True
    return False


def _covers(pattern: NamePattern, name: NamePattern) -> bool:
    """Whether every driver ``name`` stands for is matched by ``pattern``."""
    return pattern.text == name.text or (name.glob is None and pattern.matches(name.text))


def unsafe_pin_warnings(
    policies: Sequence[Policy], profiles: Iterable[DriverProfile]
) -> list[Problem]:
    """A warning for every pin rule that can reach a driver whose servers cannot take
    its pin: a rule without an export filter, whose provisioners filter (if any)
    names such a driver, and whose exclude does not name it."""
    # Drivers a loaded exempt rule takes out whole (a match on provisioners alone):
    # no pin rule ever decides for their objects (exempt wins over everything).
    exempt: list[NamePattern] = []
    for policy in policies:
        for rule in policy.rules:
            m = rule.match
            if (
                rule.action is Action.EXEMPT
                and m.provisioners
                and rule.exclude is None
                and m.exports is None
                and m.storage_class_names is None
                and m.node_kernels is None
                and m.object_selector is None
            ):
                exempt.extend(m.provisioners)
    problems: list[Problem] = []
    for policy in policies:
        if policy.pin not in PINNABLE_VERSIONS:
            continue
        for rule in policy.rules:
            if rule.action is not Action.PIN or rule.match.exports is not None:
                continue
            reach: list[str] = []
            for profile in profiles:
                if profile.can_pin(policy.pin):
                    continue
                names = profile.driver_names()
                if all(any(_covers(e, n) for e in exempt) for n in names):
                    continue
                if rule.match.provisioners is not None and not any(
                    _names_overlap(p, names) for p in rule.match.provisioners
                ):
                    continue
                excluded = rule.exclude is not None and rule.exclude.provisioners is not None
                if excluded and any(
                    _names_overlap(p, names)
                    for p in (rule.exclude.provisioners if rule.exclude else ()) or ()
                ):
                    continue
                speaks = ", ".join(sorted(profile.versions))
                reach.append(
                    f"{profile.name} ({'never pinned' if profile.pin is PinMode.NEVER else speaks})"
                )
            if not reach or "unsafe-pin" in rule.lint_ignore:
                continue
            how = getattr(rule, "on_unsupported_pin", "warn")
            verdict = "denied" if str(how) == "deny" else "allowed unchanged with a warning"
            problems.append(
                Problem(
                    _rule_position(policy, rule),
                    f'rule "{rule.name}": pins {pin_option(policy.pin)} with no export filter '
                    f"and can reach drivers that cannot take it: {', '.join(reach)}; "
                    f"their objects are {verdict} (onUnsupportedPin). Narrow it with "
                    "match.exports or match.provisioners, or exclude.provisioners",
                    severity=Severity.WARNING,
                    code="unsafe-pin",
                )
            )
    return problems


# ------------------------------------------- content changed, spec.version did not


def version_unchanged_warnings(
    policies: Iterable[Policy], previous: Mapping[str, tuple[str, str]]
) -> list[Problem]:
    """A warning for every policy whose content differs from ``previous`` (policy name
    -> (version, digest) of the copy in force before) under the same ``spec.version``:
    audit records name a policy by version, so two contents under one version make
    them ambiguous (authors bump it on every change: docs/policy-language)."""
    problems: list[Problem] = []
    for policy in policies:
        before = previous.get(policy.name)
        if before is None or before[0] != policy.version or before[1] == policy.digest:
            continue
        problems.append(
            Problem(
                policy.position or Position(policy.source or "?", 1),
                f'policy "{policy.name}": content changed ({before[1][:19]} -> '
                f"{policy.digest[:19]}) but spec.version is still {policy.version!r}: "
                "bump it, so records of the two contents can be told apart",
                Severity.WARNING,
                code="version-unchanged",
            )
        )
    return problems
