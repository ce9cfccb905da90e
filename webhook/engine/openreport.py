"""An OpenReports report (``openreports.io/v1alpha1``) for one existing object, from its
scan classification (webhook/engine/scan.py): a ``ClusterReport`` for a PV or
StorageClass (cluster-scoped), a namespaced ``Report`` in the object's namespace for a
Pod or workload with inline NFS volumes. One report per object, with ``scope`` naming
it, as Kyverno's per-resource reports do (docs/reporter.md).

Field names follow the CRDs the Go module github.com/openreports/reports-api v0.2.1
ships (config/crd/openreports.io_clusterreports.yaml, openreports.io_reports.yaml: the
same schema, one cluster-scoped, one namespaced): ``scope`` (an ObjectReference),
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
A Pod's or workload's report holds those results for each inline NFS volume, each
naming its volume in ``properties.volume``.
No ``timestamp``: a report changes only when what it says changes, so an unchanged
cluster costs no writes. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.api.decision import Outcome
from webhook.engine.scan import Classification, ScanVerdict, volume_classifications
from webhook.engine.stranded import PodRef

API_VERSION = "openreports.io/v1alpha1"
SOURCE = "nfsguard"
MANAGED_BY = {"app.kubernetes.io/managed-by": "nfsguard"}
#: The label selector that lists every report nfsguard owns.
SELECTOR = "app.kubernetes.io/managed-by=nfsguard"
_MAX_NAME = 253  # a DNS subdomain (metadata.name of a custom resource)
_PREFIX = {"PersistentVolume": "pv", "StorageClass": "sc"}

RESULT_OF_VERDICT = {
    ScanVerdict.COMPLIANT: "pass",
    ScanVerdict.FIXABLE: "fail",
    ScanVerdict.NOT_FIXABLE: "fail",
    ScanVerdict.DENIED: "fail",
    ScanVerdict.EXEMPT: "skip",
}


def report_name(kind: str, name: str) -> str:
    """``nfsguard-pv-<name>`` / ``nfsguard-sc-<name>`` / ``nfsguard-<kind>-<name>`` (a
    Pod or workload, lower-case kind: a Pod and a Deployment of one name in one namespace
    get two reports); over 253 characters, cut and ended with a hash of the full name so
    two long names never share a report."""
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
    for key in ("namespace", "name", "uid"):
        if meta.get(key):
            ref[key] = str(meta[key])
    return ref


def _results(
    c: Classification, ref: Mapping[str, str], properties: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One result per rule that matched (the deciding one with the verdict's result, the
    others ``skip``), or one ``nfsguard``/``effective-version`` result when none did."""
    ev = c.evaluation
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
                "resources": [dict(ref)],
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
                "resources": [dict(ref)],
                "source": SOURCE,
                "properties": dict(properties),
            }
        )
    return results


def _properties(c: Classification) -> dict[str, str]:
    eff, d = c.evaluation.effective, c.evaluation.decision
    properties = {
        "export": (d.target.export if d.target is not None else None) or "",
        "version": eff.describe() if eff is not None else "",
        "verdict": c.verdict.value,
        "driver": c.target.driver or "",
    }
    if c.way_out:
        properties["wayOut"] = c.way_out
    return properties


def _summary(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    summary = {k: 0 for k in ("pass", "fail", "warn", "error", "skip")}
    for r in results:
        summary[r["result"]] += 1
    return summary


def cluster_report(
    obj: Mapping[str, Any], c: Classification, pods: Sequence[PodRef] = ()
) -> dict[str, Any]:
    """The ClusterReport for ``obj`` (its kind, apiVersion and metadata as read)."""
    ref = _ref(obj)
    properties = _properties(c)
    properties["strandedPods"] = str(sum(1 for p in pods if p.stranded))
    results = _results(c, ref, properties)
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterReport",
        "metadata": {"name": report_name(ref["kind"], c.target.name), "labels": dict(MANAGED_BY)},
        "scope": ref,
        "source": SOURCE,
        "summary": _summary(results),
        "results": results,
    }


def namespaced_report(obj: Mapping[str, Any], c: Classification) -> dict[str, Any]:
    """The namespaced ``Report`` for a Pod or workload ``obj``, in its namespace: the
    results of each inline NFS volume in ``spec.volumes`` order (webhook/engine/scan.py
    ``volume_classifications``), each with the property ``volume``."""
    ref = _ref(obj)
    results: list[dict[str, Any]] = []
    for v in volume_classifications(c):
        properties = {**_properties(v), "volume": v.target.volume}
        results.extend(_results(v, ref, properties))
    return {
        "apiVersion": API_VERSION,
        "kind": "Report",
        "metadata": {
            "name": report_name(ref["kind"], c.target.name),
            "namespace": ref.get("namespace", ""),
            "labels": dict(MANAGED_BY),
        },
        "scope": ref,
        "source": SOURCE,
        "summary": _summary(results),
        "results": results,
    }


def report_for(
    obj: Mapping[str, Any], c: Classification, pods: Sequence[PodRef] = ()
) -> dict[str, Any]:
    """The report of ``obj``: a namespaced ``Report`` for a Pod or workload, else a
    ``ClusterReport`` (PVs and StorageClasses are cluster-scoped)."""
    if c.evaluation.volumes:
        return namespaced_report(obj, c)
    return cluster_report(obj, c, pods)
