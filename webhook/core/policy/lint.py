"""``nfsguard policy lint``: every problem of a set of policy files, before they ship.

The loader already finds everything that stops a policy from loading (YAML
syntax, the published JSON Schema, CIDRs, globs, kernel ranges, duplicate
names) and the per-rule warnings (an empty ``match``, ``onExplicit`` on a rule
that does not pin). Lint runs it and adds what needs every loaded policy at
once: rules that can never decide because an identical rule comes first, and
policies without rules. Pure: it takes (file name, text) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from webhook.core.drivers import DriverProfiles, builtin_profiles, unsafe_pin_warnings
from webhook.core.policy.loader import Problem, check_sources
from webhook.core.policy.model import Policy, Position, Rule


@dataclass(frozen=True)
class LintResult:
    policies: tuple[Policy, ...]
    problems: tuple[Problem, ...]
    #: The driver profiles in force with these policies (built-ins plus the files'
    #: own); None when the files have errors.
    profiles: DriverProfiles | None = None

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

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


def lint_sources(sources: Iterable[tuple[str, str]]) -> LintResult:
    """Lint every (file name, text) of ``sources`` together, as they would be loaded."""
    policies, operator, problems = check_sources(sources)
    problems = problems + _whole_set_problems(policies)
    profiles = None
    if not any(p.severity == "error" for p in problems):
        profiles = builtin_profiles().with_operator(operator)
        # Pin rules that can reach drivers whose servers cannot take the pin.
        problems += unsafe_pin_warnings(policies, profiles)
    order = {id(p): i for i, p in enumerate(problems)}
    ordered = sorted(
        problems,
        key=lambda p: (p.position.file, p.position.line, p.position.column, order[id(p)]),
    )
    return LintResult(tuple(policies), tuple(ordered), profiles)


def _whole_set_problems(policies: Iterable[Policy]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[tuple[object, ...], tuple[Policy, Rule]] = {}
    for policy in policies:
        if not policy.rules:
            problems.append(
                Problem(
                    policy.position or Position(policy.source, 1),
                    f'policy "{policy.name}" has no rules',
                    "warning",
                )
            )
        for rule in policy.rules:
            key = (rule.match, rule.exclude, rule.action, rule.on_explicit, policy.pin)
            first = seen.get(key)
            if first is None:
                seen[key] = (policy, rule)
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
                    "warning",
                )
            )
    return problems
