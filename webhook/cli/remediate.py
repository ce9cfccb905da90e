"""``nfsguard remediate``: fix through the API what ``scan`` finds fixable, and say
exactly what to do for the rest.

A plan by default (the scan's rows with ``action``/``result``); ``--apply`` patches each
fixable PV and StorageClass with the very patch the admission engine plans for an
UPDATE, behind a resourceVersion precondition (webhook/cluster/scan.py): on 409 the
object is read again and planned again, a bounded number of times, so a concurrent
change is neither lost nor overwritten. Each change is recorded in the audit chain
(``--audit-log``, webhook/audit's writer: ``nfsguard audit verify`` accepts the file)
as an UPDATE decision of its own: who ran it, rule, policy version, patch.
``--restart-stranded`` then deletes the stranded pods a controller owns (never a bare
pod), so they are recreated and mount with the new options (kubelet reads the PV at
the next fresh mount; an existing mount is kept: pkg/volume/nfs/nfs.go SetUpAt).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

import click

from webhook.api.review import AdmissionRequest, UserInfo
from webhook.audit import AuditWriteError, AuditWriter, NullAuditRecorder, open_recorder
from webhook.cli.errors import ExitCode, Refused
from webhook.cli.scanning import (
    LiveSource,
    Pass,
    Report,
    Scanned,
    Where,
    evaluate_one,
    output_option,
    where_options,
)
from webhook.cluster.scan import ClusterError, ClusterObjects, Conflict
from webhook.engine.engine import Engine
from webhook.engine.scan import Classification, ScanVerdict
from webhook.nfs.inventory import NodeInventory

_RESOURCES = {"PersistentVolume": "persistentvolumes", "StorageClass": "storageclasses"}


@dataclasses.dataclass
class Applier:
    cluster: ClusterObjects
    engine: Engine
    inventory: NodeInventory
    recorder: AuditWriter | NullAuditRecorder
    actor: str
    retries: int

    def apply(self, scanned: Scanned) -> dict[str, Any]:
        """Patch one fixable object; re-read and re-plan on conflict. The row's extra fields."""
        obj: Mapping[str, Any] = scanned.obj
        c: Classification = scanned.classification
        kind, name = c.target.kind, c.target.name
        attempts = 0
        while True:
            attempts += 1
            rv = _rv(obj)
            assert c.patch is not None
            try:
                after = self.cluster.patch(kind, name, rv, list(c.patch))
            except Conflict:
                if attempts > self.retries:
                    return {
                        "result": f"conflict: still changing after {attempts} attempts",
                        "attempts": attempts,
                    }
                fresh = self.cluster.get(kind, name)
                if fresh is None:
                    return {"result": "gone", "attempts": attempts}
                replanned = evaluate_one(self.engine, fresh, self.inventory, f"{kind}/{name}")
                obj = fresh
                if replanned is None or replanned.verdict is not ScanVerdict.FIXABLE:
                    now = replanned.verdict.value if replanned is not None else "not NFS"
                    return {
                        "result": f"changed meanwhile, now {now}: left alone",
                        "attempts": attempts,
                    }
                c = replanned
                continue
            except ClusterError as exc:
                return {"result": f"failed: {exc}", "attempts": attempts}
            self._record(c, obj, rv, _rv(after))
            return {
                "result": "applied",
                "attempts": attempts,
                "appliedPatch": [dict(op) for op in c.patch or ()],
            }

    def _record(self, c: Classification, obj: Mapping[str, Any], rv: str, new_rv: str) -> None:
        kind = c.target.kind
        request = AdmissionRequest(
            uid=f"remediate-{uuid.uuid4()}",
            kind=kind,
            resource=_RESOURCES[kind],
            operation="UPDATE",
            name=c.target.name,
            object=obj,
            old_object=obj,
            user=UserInfo(username=self.actor),
        )
        d = c.evaluation.decision
        decision = dataclasses.replace(
            d,
            patch=c.patch or (),
            notes=(*d.notes, f"applied by nfsguard remediate: resourceVersion {rv} -> {new_rv}"),
        )
        try:
            self.recorder.record(request, decision)
        except (AuditWriteError, OSError) as exc:
            raise Refused(
                f"nfsguard: {kind}/{c.target.name} was patched but could not be recorded: {exc}"
            ) from None

    def restart(self, pods: list[dict[str, Any]], scanned: Scanned) -> set[str]:
        """Delete the stranded, controller-owned pods of a fixed PV; the nodes they were on."""
        nodes: set[str] = set()
        by_name = {(p.namespace, p.name): p for p in scanned.pods}
        for entry in pods:
            if not entry["stranded"]:
                continue
            ref = by_name[(entry["namespace"], entry["name"])]
            if ref.node:
                nodes.add(ref.node)
            if ref.controller is None:
                entry["restart"] = "bare pod (no controller): not deleted, recreate it yourself"
                continue
            try:
                gone = self.cluster.delete_pod(ref.namespace, ref.name, ref.uid)
            except ClusterError as exc:
                entry["restart"] = f"failed: {exc}"
                continue
            entry["restart"] = f"deleted; {ref.controller} recreates it" if gone else "already gone"
        return nodes


def _rv(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("resourceVersion", "")) if isinstance(meta, Mapping) else ""


@click.command()
@where_options
@output_option
@click.option("--apply", "apply_", is_flag=True, help="Carry the plan out (else only print it).")
@click.option(
    "--audit-log", type=click.Path(dir_okay=False), help="Record every change in this audit chain."
)
@click.option(
    "--audit-key",
    type=click.Path(dir_okay=False, exists=True),
    help="Ed25519 key: sign checkpoints.",
)
@click.option(
    "--actor", help="Who runs it, as recorded (default: the user the apiserver authenticates)."
)
@click.option(
    "--restart-stranded", is_flag=True, help="Delete stranded controller-owned pods of fixed PVs."
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="Re-plans after a conflict.",
)
def remediate(
    policies: tuple[str, ...],
    policy_configmap: str | None,
    nodes_file: str | None,
    kubeconfig: str | None,
    in_cluster: bool,
    as_user: str | None,
    page_size: int,
    files: tuple[str, ...],
    output: str,
    apply_: bool,
    audit_log: str | None,
    audit_key: str | None,
    actor: str | None,
    restart_stranded: bool,
    retries: int,
) -> ExitCode:
    """Plan (default) or --apply the in-place fixes scan finds, and print the safe
    procedure for objects that cannot be fixed in place.

    Exit 0 when nothing is (left) at risk, 1 when something is, 2 on bad input.
    """
    if (apply_ or restart_stranded) and files:
        raise Refused("nfsguard: --apply and --restart-stranded need a cluster, not FILES")
    if restart_stranded and not apply_:
        raise Refused("nfsguard: --restart-stranded goes with --apply")
    where = Where(
        files, policies, policy_configmap, nodes_file, kubeconfig, in_cluster, as_user, page_size
    )
    source = where.source()
    engine = where.engine(source)
    run = Pass(engine, source)
    applier: Applier | None = None
    if apply_:
        assert isinstance(source, LiveSource)
        try:
            recorder = open_recorder(audit_log, key_file=audit_key)
        except (AuditWriteError, ValueError, OSError) as exc:
            raise Refused(f"nfsguard: {exc}") from None
        if audit_log is None:
            click.echo(
                "nfsguard: no --audit-log: remediate records nothing itself (a registered "
                "webhook still records each UPDATE)",
                err=True,
            )
        who = actor or source.cluster.whoami() or "nfsguard-remediate"
        applier = Applier(source.cluster, engine, run.inventory, recorder, who, retries)
    report = Report(output, columns=_remediate_lines)
    left = 0
    hung: set[str] = set()
    try:
        for scanned in run:
            verdict = scanned.classification.verdict
            extra: dict[str, Any] = {
                "action": _action(verdict),
                "result": "planned" if verdict.at_risk else "nothing to do",
            }
            pods = [p.to_dict() for p in scanned.pods]
            if applier is not None and verdict is ScanVerdict.FIXABLE:
                extra.update(applier.apply(scanned))
                if extra["result"] == "applied" and restart_stranded:
                    hung |= applier.restart(pods, scanned)
            elif applier is not None and restart_stranded and _pinned(scanned):
                hung |= applier.restart(pods, scanned)
            if verdict.at_risk and extra["result"] != "applied":
                left += 1
            extra["pods"] = pods
            report.add(scanned, extra)
        report.finish(run.ignored)
    finally:
        if applier is not None:
            applier.recorder.close()
    if hung:
        click.echo(
            "nfsguard: nodes that may still hold hung NFS mounts (mount.nfs in D state): "
            f"{', '.join(sorted(hung))}. The fixed options apply at the next fresh mount; if "
            "recreated pods hang there again, drain and reboot the node (nfsguard cannot fix it).",
            err=True,
        )
    if not apply_:
        left = sum(report.summary[v.value] for v in ScanVerdict if v.at_risk)
    return ExitCode.FINDING if left else ExitCode.OK


def _remediate_lines(r: dict[str, Any]) -> list[str]:
    """The table's extra lines for remediate: what is (or would be) done, and to which pods."""
    if r.get("action", "none") == "none":
        return []
    attempts = f" after {r['attempts']} attempt(s)" if r.get("attempts") else ""
    lines = [f"    {r['action']}: {r['result']}{attempts}"]
    lines += [
        f"    pod {p['namespace']}/{p['name']}: {p['restart']}" for p in r["pods"] if "restart" in p
    ]
    return lines


def _action(verdict: ScanVerdict) -> str:
    return {
        ScanVerdict.FIXABLE: "patch",
        ScanVerdict.NOT_FIXABLE: "by hand (see wayOut)",
        ScanVerdict.DENIED: "by hand (the policy refuses it)",
    }.get(verdict, "none")


def _pinned(scanned: Scanned) -> bool:
    """A PV already fixed (an earlier run): compliant, covered, and safe as it stands."""
    c = scanned.classification
    eff = c.evaluation.effective
    return (
        c.target.kind == "PersistentVolume"
        and c.verdict is ScanVerdict.COMPLIANT
        and c.covered
        and eff is not None
        and not eff.affected
    )


__all__ = ["remediate"]
