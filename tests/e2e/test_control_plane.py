"""The harness itself: a real apiserver of the pinned release, PVs stored and deleted."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from tests.e2e.kubecluster import PIN, Cleanup, ControlPlane, nfs_pv, pv_model


def test_apiserver_runs_the_pinned_release(api_client: k8s.ApiClient, kube_version: str) -> None:
    info = k8s.VersionApi(api_client).get_code()
    assert info.git_version == f"v{kube_version}"


def test_apiserver_listens_on_loopback_only(control_plane: ControlPlane) -> None:
    assert control_plane.url.startswith("https://127.0.0.1:")
    assert control_plane.apiserver is not None and control_plane.apiserver.alive()
    argv = " ".join(control_plane.apiserver.argv)
    assert "--bind-address=127.0.0.1" in argv


def test_pv_round_trip_without_webhook(
    core_v1: k8s.CoreV1Api,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    cleanup: Cleanup,
) -> None:
    # Nothing is registered here: what goes in is what is stored.
    assert admissionregistration_v1.list_mutating_webhook_configuration().items == []
    name = cleanup.pv("smoke-in-tree")
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/smoke", ["nfsvers=4.1", "hard"]))
    )
    stored = core_v1.read_persistent_volume(name)
    assert stored.spec is not None and stored.spec.nfs is not None
    assert stored.spec.mount_options == ["nfsvers=4.1", "hard"]
    assert stored.spec.nfs.server == "192.0.2.10"
    assert stored.status is not None and stored.status.phase == "Pending"
    # StorageObjectInUseProtection is off: no pv-protection finalizer, deletion is immediate.
    assert stored.metadata is not None and not stored.metadata.finalizers
    core_v1.delete_persistent_volume(name)
    with pytest.raises(k8s.ApiException) as gone:
        core_v1.read_persistent_volume(name)
    assert gone.value.status == 404


def test_dry_run_create_stores_nothing(core_v1: k8s.CoreV1Api) -> None:
    pv = core_v1.create_persistent_volume(
        pv_model(nfs_pv("smoke-dry-run", "192.0.2.10", "/exports/x", [PIN])), dry_run="All"
    )
    assert pv.spec is not None and pv.spec.mount_options == [PIN]
    with pytest.raises(k8s.ApiException) as gone:
        core_v1.read_persistent_volume("smoke-dry-run")
    assert gone.value.status == 404
