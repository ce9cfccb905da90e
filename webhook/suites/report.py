"""How a run of policy test cases reads (docs/policy-authoring.md): one ``PASS
SUITE::CASE`` or ``FAIL SUITE::CASE (FILE:LINE)`` line per case as it runs, each
failure indented below it, and always, last, exactly ``N passed, M failed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.suites.suite import CaseResult


def case_lines(result: CaseResult) -> list[str]:
    """The lines of one case's result."""
    if result.passed:
        return [f"PASS {result.case.id}"]
    return [
        f"FAIL {result.case.id} ({result.case.where})",
        *(f"    {line}" for line in result.failures),
    ]


@dataclass
class Tally:
    """Cases passed and failed so far, for the last line."""

    passed: int = 0
    failed: int = 0

    def add(self, result: CaseResult) -> None:
        if result.passed:
            self.passed += 1
        else:
            self.failed += 1

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"
