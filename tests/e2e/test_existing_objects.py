"""Objects that predate a rule, and a policy rolled out in Audit, on the real kube-apiserver.

A PV is created before nfsguard is registered; then a deny rule arrives (the webhook is
registered by url, as the other e2e tests do). The PV must still be bound (``claimRef``),
labelled and deleted (finalizer removal): all UPDATEs that keep its NFS options. An
UPDATE that asks for 4.2 is still denied. With the same rules in ``enforcement: Audit``
the objects Enforce would pin or deny are admitted unchanged, with warnings, and the
audit records say what Enforce would have done. Every assertion is on what the apiserver
stored or returned, and on nfsguard's own audit log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import RegisterFactory, WebhookFactory
from tests.e2e.kubecluster import (
    Cleanup,
    nfs_pv,
    pv_model,
    version_options,
    wait_until,
    warnings_of,
)
from webhook.audit.chain_file import slot_chains

POLICIES = Path(__file__).resolve().parent / "policies"
FINALIZER = "e2e.nfsguard.io/keep"  # stands in for pv-protection / external-provisioner's


def decisions(log: Path, name: str) -> list[dict[str, Any]]:
    """nfsguard's decision records for one object, oldest first."""
    out = []
    lines = [
        line
        for _live, files in slot_chains(str(log))  # a chain per worker
        for name in files
        for line in Path(name).read_text().splitlines()
    ]
    for line in lines:
        record = json.loads(line)
        if record.get("type") == "decision" and record["request"]["name"] == name:
            out.append(record)
    return out


def denial(exc: pytest.ExceptionInfo[k8s.ApiException]) -> str:
    assert exc.value.status == 403, exc.value.body
    return str(json.loads(exc.value.body or "{}").get("message", ""))


def test_a_pv_that_predates_a_deny_rule_can_be_bound_labelled_and_deleted(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
) -> None:
    name = cleanup.pv("existing-deny")
    body = nfs_pv(name, "192.0.2.40", "/exports/old", ["hard"])
    body["metadata"]["finalizers"] = [FINALIZER]
    core_v1.create_persistent_volume(pv_model(body))  # before the rule exists

    wh = start_webhook(POLICIES / "existing.yaml")
    register(wh, name="nfsguard-e2e-existing")
    # A new PV like it is refused now: the rule is live.
    with pytest.raises(k8s.ApiException) as refused:
        core_v1.create_persistent_volume(
            pv_model(nfs_pv(cleanup.pv("existing-new"), "192.0.2.40", "/exports/new", ["hard"]))
        )
    assert 'rule "deny-old-filer"' in denial(refused)

    # Bind it, as the PV controller does: an UPDATE setting claimRef. The registered
    # matchConditions (webhook/registration/scope.py, not-a-bind-or-finalizer-update) keep
    # such an update from reaching nfsguard at all; were it sent, the engine would allow it.
    pv = core_v1.read_persistent_volume(name)
    assert pv.spec is not None
    pv.spec.claim_ref = k8s.V1ObjectReference(
        kind="PersistentVolumeClaim", namespace="default", name="data", uid="0000-1"
    )
    data, status, headers = core_v1.replace_persistent_volume_with_http_info(name, pv)
    assert status == 200 and data.spec is not None
    assert data.spec.claim_ref is not None and data.spec.claim_ref.name == "data"
    assert data.spec.mount_options == ["hard"]  # a deny rule never changes the object
    assert [w for w in warnings_of(headers) if "nfsguard" in w] == []

    # Label it: this UPDATE reaches nfsguard, which allows it (options unchanged).
    _, status, headers = core_v1.patch_persistent_volume_with_http_info(
        name, {"metadata": {"labels": {"team": "data"}}}
    )
    assert status == 200
    labelled = core_v1.read_persistent_volume(name).metadata
    assert labelled is not None and labelled.labels == {"team": "data"}
    (warning,) = [w for w in warnings_of(headers) if "nfsguard" in w]
    assert warning.startswith("set nfsvers=4.0 in mountOptions (allowed: options unchanged)")
    assert f"PersistentVolume/{name}" in warning and len(warning) < 120

    # An UPDATE that asks for 4.2 is judged as a new object: denied.
    with pytest.raises(k8s.ApiException) as asked:
        core_v1.patch_persistent_volume(name, {"spec": {"mountOptions": ["hard", "nfsvers=4.2"]}})
    assert 'rule "deny-old-filer"' in denial(asked)
    stored = core_v1.read_persistent_volume(name)
    assert stored.spec is not None and stored.spec.mount_options == ["hard"]

    # Delete it: deletionTimestamp is set, and the finalizer removal (an UPDATE) completes it.
    core_v1.delete_persistent_volume(name)
    terminating = core_v1.read_persistent_volume(name).metadata
    assert terminating is not None and terminating.deletion_timestamp is not None
    core_v1.patch_persistent_volume(name, {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            core_v1.read_persistent_volume(name)
        except k8s.ApiException as e:
            return bool(e.status == 404)
        return False

    wait_until(f"PV {name} to be deleted", gone, 30)

    records = decisions(wh.audit_log, name)
    updates = [r for r in records if r["request"]["operation"] == "UPDATE"]
    # the label: warned as existing; the 4.2 ask: denied; the bind and the deletion's
    # finalizer removal never reached nfsguard (matchConditions), so nothing is recorded
    assert [(r["outcome"], r.get("existing")) for r in updates] == [
        ("warned", True),
        ("denied", False),
    ]
    assert all(r["rule"] == "deny-old-filer" for r in updates)
    assert "existing object: options unchanged" in updates[0]["notes"]


def test_audit_mode_admits_unchanged_and_records_what_enforce_would_do(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
) -> None:
    wh = start_webhook(POLICIES / "audit.yaml")
    register(wh, name="nfsguard-e2e-audit")

    denied_name = cleanup.pv("audit-would-deny")
    data, status, headers = core_v1.create_persistent_volume_with_http_info(
        pv_model(nfs_pv(denied_name, "192.0.2.40", "/exports/a", ["hard"]))
    )
    assert status == 201 and data.spec is not None and data.spec.mount_options == ["hard"]
    (warning,) = [w for w in warnings_of(headers) if "nfsguard" in w]
    assert warning.startswith("set nfsvers=4.0 in mountOptions (audit: would deny it)")
    assert f"PersistentVolume/{denied_name}" in warning

    pinned_name = cleanup.pv("audit-would-pin")
    data, status, headers = core_v1.create_persistent_volume_with_http_info(
        pv_model(nfs_pv(pinned_name, "192.0.2.41", "/exports/b", ["hard", "nfsvers=4.2"]))
    )
    assert status == 201 and data.spec is not None
    assert version_options(data.spec.mount_options) == ["nfsvers=4.2"]  # unchanged
    (warning,) = [w for w in warnings_of(headers) if "nfsguard" in w]
    assert warning.startswith("set nfsvers=4.0 in mountOptions (audit: would pin it)")

    (would_deny,) = decisions(wh.audit_log, denied_name)
    assert would_deny["outcome"] == "warned" and would_deny["enforcement"] == "Audit"
    assert would_deny["wouldBe"] == "denied" and would_deny["patch"] == []
    assert would_deny["message"].startswith("audit: Enforce would have denied")
    (would_pin,) = decisions(wh.audit_log, pinned_name)
    assert would_pin["outcome"] == "warned" and would_pin["wouldBe"] == "mutated"
    assert would_pin["patch"] == []
    assert would_pin["wouldPatch"] == [
        {"op": "replace", "path": "/spec/mountOptions", "value": ["hard", "nfsvers=4.0"]}
    ]
