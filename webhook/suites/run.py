"""Running policy test cases: each case's object goes through
``webhook.admission.handler.decide`` with the AdmissionRequest the apiserver would
send (``offline_request``), exactly as the served webhook decides, and the admitted
object is built by applying the decision's patch; every expectation that does not
hold is one failure line.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from webhook.admission.errors import BadRequest
from webhook.admission.handler import decide
from webhook.admission.offline import admitted, offline_request
from webhook.api.decision import Outcome
from webhook.engine.engine import Engine
from webhook.suites.suite import UNCHANGED, Case, CaseResult


def _outcome_ok(expected: str, got: Outcome) -> bool:
    if expected == "unchanged":
        return got in UNCHANGED
    return got.value == expected


def _mount_options(obj: Mapping[str, Any]) -> list[str]:
    holder = obj.get("spec") if obj.get("kind") == "PersistentVolume" else obj
    value = holder.get("mountOptions") if isinstance(holder, Mapping) else None
    return list(value) if isinstance(value, list) else []


def yaml_diff(expected: Any, actual: Any, expected_name: str, actual_name: str) -> list[str]:
    """A unified diff of two objects as YAML (keys sorted, so order never shows)."""

    def dump(value: Any) -> list[str]:
        return yaml.safe_dump(value, sort_keys=True, default_flow_style=False).splitlines()

    return list(
        difflib.unified_diff(
            dump(expected), dump(actual), expected_name, actual_name, lineterm="", n=3
        )
    )


def run_case(engine: Engine, case: Case, uid: str) -> CaseResult:
    result = CaseResult(case)
    obj = copy.deepcopy(dict(case.obj))
    try:
        request = offline_request(obj, case.operation, uid, case.old)
        decision = decide(engine, request, case.inventory)
    except BadRequest as exc:
        result.failures.append(f"the object is rejected as a bad request: {exc.message}")
        return result
    exp, fail = case.expect, result.failures.append
    if not _outcome_ok(exp.outcome, decision.outcome):
        why = f": {decision.message}" if decision.message else ""
        fail(f"outcome: expected {exp.outcome}, got {decision.outcome.value}{why}")
    deciding = decision.deciding
    if exp.rule is not None and (deciding is None or deciding.rule != exp.rule):
        fail(f"rule: expected {exp.rule!r}, got {deciding.rule if deciding else None!r}")
    if exp.policy is not None and (deciding is None or deciding.policy != exp.policy):
        fail(f"policy: expected {exp.policy!r}, got {deciding.policy if deciding else None!r}")
    if exp.message is not None and exp.message not in decision.message:
        fail(f"message: expected to contain {exp.message!r}, got {decision.message!r}")
    if exp.warning is not None and not any(exp.warning in w for w in decision.warnings):
        fail(f"warning: expected one containing {exp.warning!r}, got {list(decision.warnings)}")
    if exp.warnings is not None and list(decision.warnings) != list(exp.warnings):
        fail(f"warnings: expected exactly {list(exp.warnings)}, got {list(decision.warnings)}")
    if exp.would_be is not None:
        got_would = decision.would_be.value if decision.would_be is not None else None
        if got_would != exp.would_be:
            fail(f"wouldBe: expected {exp.would_be}, got {got_would}")
    if exp.existing is not None and decision.existing != exp.existing:
        fail(f"existing: expected {exp.existing}, got {decision.existing}")
    if exp.golden is None and exp.mount_options is None and exp.node_options is None:
        return result
    if not decision.allowed:
        fail("object: denied, so nothing was admitted to compare")
        return result
    out = admitted(obj, decision)
    if exp.mount_options is not None and _mount_options(out) != list(exp.mount_options):
        fail(f"mountOptions: expected {list(exp.mount_options)}, got {_mount_options(out)}")
    if exp.node_options is not None:
        target = engine.read(out)
        if target is None:  # a Pod or workload: its first inline NFS volume's options
            volumes = engine.evaluate(out).volumes
            target = volumes[0].target if volumes else None
        got = target.node_options() if target is not None else []
        if got != list(exp.node_options):
            fail(f"nodeOptions: expected {list(exp.node_options)}, got {got}")
    if exp.golden is not None and out != exp.golden:
        fail("object: the admitted object differs from the golden one:")
        result.failures += yaml_diff(exp.golden, out, f"expected ({exp.golden_source})", "admitted")
    return result


def run_cases(
    cases: Sequence[Case], engines: Mapping[tuple[str, ...], Engine]
) -> Iterator[CaseResult]:
    for n, case in enumerate(cases, 1):
        yield run_case(engines[case.policies], case, f"policy-test-{n}")
