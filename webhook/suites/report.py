"""How a run of policy test cases reads (docs/policy-authoring.md): one ``PASS
SUITE::CASE`` or ``FAIL SUITE::CASE (FILE:LINE)`` line per case as it runs, each
failure indented below it, and always, last, exactly ``N passed, M failed``; or the
same results as JSON or JUnit XML for CI systems.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Timed:
    """A case's result and the seconds it took (for JUnit's ``time``)."""

    result: CaseResult
    seconds: float


def _where(case_where: str) -> tuple[str, int]:
    file, _, line = case_where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (case_where, 0)


def to_json(results: Sequence[Timed], tally: Tally) -> dict[str, Any]:
    """``policy test -o json``: every case shown, and the totals of every case run."""
    cases = []
    for timed in results:
        case = timed.result.case
        file, line = _where(case.where)
        cases.append(
            {
                "id": case.id,
                "suite": case.suite,
                "name": case.name,
                "file": file,
                "line": line,
                "passed": timed.result.passed,
                "failures": list(timed.result.failures),
                "seconds": round(timed.seconds, 6),
            }
        )
    return {"passed": tally.passed, "failed": tally.failed, "cases": cases}


def to_junit(results: Sequence[Timed], tally: Tally) -> str:
    """``policy test -o junit``: JUnit XML as CI systems read it (one ``testsuite`` per
    suite, a ``testcase`` per case shown, ``failure`` with every failure line); the
    ``testsuites`` totals count every case run."""
    root = ET.Element(
        "testsuites",
        name="nfsguard policy test",
        tests=str(tally.passed + tally.failed),
        failures=str(tally.failed),
        errors="0",
    )
    suites: dict[str, ET.Element] = {}
    counts: dict[str, list[int]] = {}
    for timed in results:
        case = timed.result.case
        suite = suites.get(case.suite)
        if suite is None:
            suite = suites[case.suite] = ET.SubElement(root, "testsuite", name=case.suite)
            counts[case.suite] = [0, 0]
        counts[case.suite][0] += 1
        file, line = _where(case.where)
        element = ET.SubElement(
            suite,
            "testcase",
            classname=case.suite,
            name=case.name,
            file=file,
            line=str(line),
            time=f"{timed.seconds:.6f}",
        )
        if not timed.result.passed:
            counts[case.suite][1] += 1
            failure = ET.SubElement(element, "failure", message=timed.result.failures[0])
            failure.text = "\n".join(timed.result.failures)
    for name, suite in suites.items():
        suite.set("tests", str(counts[name][0]))
        suite.set("failures", str(counts[name][1]))
        suite.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
