"""An OpenReports ``ClusterReport`` (``openreports.io/v1alpha1``) for one existing PV or
StorageClass, from its scan classification (webhook/engine/scan.py).

Field names follow the CRD the Go module github.com/openreports/reports-api v0.2.1
ships (config/crd/openreports.io_clusterreports.yaml): ``scope`` (an ObjectReference),
``source``, ``summary`` {pass, fail, warn, error, skip} and ``results[]`` at the top
level of the object (no ``spec``). A result: ``policy`` (required), ``rule``,
``result``, ``message``, ``resources``, ``properties`` (string map), ``source``.

Result of the deciding rule, from the verdict (docs/reporter.md):

- ``compliant`` -> ``pass`` (``warn`` when the deciding rule is a warn rule: admission
  admits it with a warning);
- ``fixable``, ``not-fixable-in-place``, ``denied`` -> ``fail``;
- ``exempt`` -> ``skip``.

Rules that match but do not decide get a ``skip`` result naming the rule that did (when
no rule decides, the version is safe and every matched rule gets the verdict's); an
object no rule matches gets one result of policy ``nfsguard`` (rule ``effective-version``).
No ``timestamp``: a report changes only when what it says changes, so an unchanged
cluster costs no writes. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.api.decision import Outcome
from webhook.engine.scan import Classification, ScanVerdict
from webhook.engine.stranded import PodRef

API_VERSION = "openreports.io/v1alpha1"
SOURCE = "nfsguard"
MANAGED_BY = {"app.kubernetes.io/managed-by": "nfsguard"}
#: The label selector that lists every report nfsguard owns.
SELECTOR = "app.kubernetes.io/managed-by=nfsguard"
_MAX_NAME = 253  # a DNS subdomain (metadata.name of a cluster-scoped custom resource)
_PREFIX = {"PersistentVolume": "pv", "StorageClass": "sc"}

RESULT_OF_VERDICT = {
    ScanVerdict.COMPLIANT: "pass",
    ScanVerdict.FIXABLE: "fail",
    ScanVerdict.NOT_FIXABLE: "fail",
    ScanVerdict.DENIED: "fail",
    ScanVerdict.EXEMPT: "skip",
}


def report_name(kind: str, name: str) -> str:
    """``nfsguard-pv-<name>`` / ``nfsguard-sc-<name>``; over 253 characters, cut and
    ended with a hash of the full name so two long names never share a report."""
    full = f"nfsguard-{_PREFIX.get(kind, kind.lower())}-{name}"
    if len(full) <= _MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    return f"{full[: _MAX_NAME - 17].rstrip('-.')}-{digest}"


def result_of(c: Classification) -> str:
    if c.verdict is ScanVerdict.COMPLIANT and c.evaluation.outcome is Outcome.WARNED:
        return "warn"
    return RESULT_OF_VERDICT[c.verdict]


def _ref(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    ref = {"apiVersion": str(obj.get("apiVersion", "")), "kind": str(obj.get("kind", ""))}
    for key in ("name", "uid"):
        if meta.get(key):
            ref[key] = str(meta[key])
    return ref


def cluster_report(
    obj: Mapping[str, Any], c: Classification, pods: Sequence[PodRef] = ()
) -> dict[str, Any]:
    """The ClusterReport for ``obj`` (its kind, apiVersion and metadata as read)."""
    t, ev = c.target, c.evaluation
    eff = ev.effective
    d = ev.decision
    ref = _ref(obj)
    stranded = sum(1 for p in pods if p.stranded)
    properties = {
        "export": (d.target.export if d.target is not None else None) or "",
        "version": eff.describe() if eff is not None else "",
        "verdict": c.verdict.value,
        "driver": t.driver or "",
        "strandedPods": str(stranded),
    }
    if c.way_out:
        properties["wayOut"] = c.way_out
    results: list[dict[str, Any]] = []
    deciding = ev.deciding
    for rule in ev.matched or ((deciding,) if deciding is not None else ()):
        # With no deciding rule (a safe version), every matched rule is met: its result is
        # the verdict's; when one rule decides, the others did not act: skip.
        decides = deciding is None or rule.ref == deciding.ref
        message = c.reason if decides or deciding is None else f"matched; {deciding.who} decides"
        results.append(
            {
                "policy": rule.policy.name,
                "rule": rule.rule.name,
                "result": result_of(c) if decides else "skip",
                "message": message,
                "resources": [ref],
                "source": SOURCE,
                "properties": {**properties, "policyVersion": rule.policy.version},
            }
        )
    if not results:
        results.append(
            {
                "policy": SOURCE,
                "rule": "effective-version",
                "result": result_of(c),
                "message": c.reason,
                "resources": [ref],
                "source": SOURCE,
                "properties": properties,
            }
        )
    summary = {k: 0 for k in ("pass", "fail", "warn", "error", "skip")}
    for r in results:
        summary[r["result"]] += 1
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterReport",
        "metadata": {"name": report_name(ref["kind"], t.name), "labels": dict(MANAGED_BY)},
        "scope": ref,
        "source": SOURCE,
        "summary": summary,
        "results": results,
    }
