"""A webhook outage, as the apiserver handles it, for each failurePolicy.

Each test starts its own `nfsguard serve`, registers the shipped configuration (from
manifests/) with the failurePolicy under test, proves it live, then stops the server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import RegisterFactory, WebhookFactory
from tests.e2e.kubecluster import (
    PIN,
    Cleanup,
    ControlPlane,
    audit_events,
    nfs_pv,
    pv_model,
    wait_until,
)

POLICY = Path(__file__).resolve().parent / "policies" / "main.yaml"


def test_fail_refuses_creates_while_the_webhook_is_down(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
) -> None:
    wh = start_webhook(POLICY)
    register(wh, name="nfsguard-e2e-fail", failure_policy="Fail")
    name = cleanup.pv("outage-fail")
    body = pv_model(nfs_pv(name, "192.0.2.10", "/exports/o", ["nfsvers=4.1"]))
    wh.stop()

    with pytest.raises(k8s.ApiException) as exc:
        core_v1.create_persistent_volume(body)
    assert exc.value.status == 500, exc.value.body
    message = json.loads(exc.value.body or "{}").get("message", "")
    assert "failed calling webhook" in message
    with pytest.raises(k8s.ApiException) as gone:
        core_v1.read_persistent_volume(name)
    assert gone.value.status == 404


def test_ignore_admits_unmutated_while_the_webhook_is_down(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    control_plane: ControlPlane,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
) -> None:
    wh = start_webhook(POLICY)
    register(wh, name="nfsguard-e2e-ignore", failure_policy="Ignore")
    name = cleanup.pv("outage-ignore")
    wh.stop()

    core_v1.create_persistent_volume(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/o", ["nfsvers=4.1"]))
    )
    stored = core_v1.read_persistent_volume(name)
    assert stored.spec is not None
    assert stored.spec.mount_options == ["nfsvers=4.1"]  # the unsafe version got through

    # ... and the only trace is the apiserver's failed-open audit annotation.
    def failed_open() -> list[str]:
        return [
            k
            for ev in audit_events(control_plane.audit_log, "persistentvolumes", name, "create")
            for k in (ev.get("annotations") or {})
            if k.startswith("failed-open.")
        ]

    wait_until("a failed-open audit annotation", lambda: bool(failed_open()), 10)


def test_switching_fail_to_ignore_on_a_live_registration(
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
) -> None:
    """The outage runbook: while the server is down, flip failurePolicy to Ignore."""
    wh = start_webhook(POLICY)
    reg = register(wh, name="nfsguard-e2e-flip", failure_policy="Fail")
    ok = pv_model(nfs_pv("flip-before", "192.0.2.10", "/exports/f", ["nfsvers=4.2"]))
    cleanup.pv("flip-before")
    core_v1.create_persistent_volume(ok)
    before = core_v1.read_persistent_volume("flip-before")
    assert before.spec is not None and before.spec.mount_options == [PIN]

    wh.stop()
    reg.set_failure_policy("Ignore")
    body = pv_model(nfs_pv(cleanup.pv("flip-after"), "192.0.2.10", "/exports/f", ["nfsvers=4.2"]))

    def admitted() -> bool:
        try:
            core_v1.create_persistent_volume(body, dry_run="All")
        except k8s.ApiException:
            return False
        return True

    wait_until("failurePolicy Ignore to take effect", admitted, 30)
    core_v1.create_persistent_volume(body)
    after = core_v1.read_persistent_volume("flip-after")
    assert after.spec is not None and after.spec.mount_options == ["nfsvers=4.2"]
