"""The real server behind a real kube-apiserver: what a user of the cluster sees.

One `nfsguard serve` for the module, registered with the MutatingWebhookConfiguration from
manifests/ (pointed at 127.0.0.1), policy tests/e2e/policies/main.yaml. Every assertion is on
the object the apiserver STORED (read back), or on what came back to the client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.kubecluster import (
    PIN,
    Cleanup,
    ControlPlane,
    WebhookServer,
    audit_events,
    nfs_pv,
    nfs_storage_class,
    pv_model,
    sc_model,
    split_options,
    version_options,
    wait_until,
    warnings_of,
)
from webhook.audit.chain_file import slot_chains

POLICY = "main.yaml"
LEGACY = "volume.beta.kubernetes.io/mount-options"

pytestmark = pytest.mark.usefixtures("module_webhook")


def others(entries: list[str] | None) -> list[str]:
    """The options that are not version options, in order."""
    vers = set(version_options(entries))
    return [o for o in split_options(entries) if o not in vers]


def created(log: Path, name: str) -> list[dict[str, Any]]:
    return audit_events(log, "persistentvolumes", name, "create")


def stored_options(core: k8s.CoreV1Api, name: str) -> list[str] | None:
    pv = core.read_persistent_volume(name)
    assert pv.spec is not None
    return pv.spec.mount_options


def denial(exc: pytest.ExceptionInfo[k8s.ApiException]) -> str:
    """The Status message a denied client gets."""
    e = exc.value
    # The apiserver passes the webhook's status.code through (raising anything below 400 to
    # 400); nfsguard answers a denial with 403 Forbidden.
    assert e.status == 403, f"expected 403 for a denial, got {e.status}: {e.body}"
    body = json.loads(e.body or "{}")
    assert body.get("kind") == "Status" and body.get("status") == "Failure"
    assert body.get("reason") == "Forbidden" and body.get("code") == 403
    return str(body.get("message", ""))


# --- pin: the stored object carries exactly one nfsvers=4.0 ---------------------------------


def test_in_tree_pv_version_is_replaced(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("pin-in-tree")
    asked = ["hard", "nfsvers=4.1", "timeo=600"]
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.10", "/exports/a", asked)))
    stored = stored_options(core_v1, name)
    assert version_options(stored) == [PIN]
    assert others(stored) == ["hard", "timeo=600"]


def test_csi_pv_version_is_replaced(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("pin-csi")
    asked = ["vers=4.2,rsize=1048576", "nconnect=4"]
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/csi", asked, csi=True))
    )
    pv = core_v1.read_persistent_volume(name)
    assert pv.spec is not None and pv.spec.csi is not None
    assert pv.spec.csi.driver == "nfs.csi.k8s.io"
    assert version_options(pv.spec.mount_options) == [PIN]
    assert others(pv.spec.mount_options) == ["rsize=1048576", "nconnect=4"]


def test_pv_without_any_version_gets_the_pin(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    # No mountOptions at all: the client negotiates up to 4.2, so it is affected; the
    # patch must add the list (an `add .../-` to a missing list would be a 500).
    name = cleanup.pv("pin-no-options")
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.10", "/exports/b")))
    assert stored_options(core_v1, name) == [PIN]


def test_bare_v4_is_pinned(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("pin-bare-v4")
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/c", ["nfsvers=4", "noatime"], csi=True))
    )
    stored = stored_options(core_v1, name)
    assert version_options(stored) == [PIN]
    assert others(stored) == ["noatime"]


def test_legacy_annotation_is_where_the_pin_goes(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    # kubelet uses the beta annotation INSTEAD of spec.mountOptions when it is present.
    name = cleanup.pv("pin-legacy-annotation")
    body = nfs_pv(
        name,
        "192.0.2.10",
        "/exports/legacy",
        ["nfsvers=4.1", "noatime"],
        annotations={LEGACY: "nfsvers=4.2,hard"},
    )
    core_v1.create_persistent_volume(pv_model(body))
    pv = core_v1.read_persistent_volume(name)
    assert pv.metadata is not None and pv.spec is not None
    annotation = (pv.metadata.annotations or {})[LEGACY]
    assert version_options([annotation]) == [PIN]
    assert others([annotation]) == ["hard"]
    assert version_options(pv.spec.mount_options) == []
    assert others(pv.spec.mount_options) == ["noatime"]


def test_storage_class_version_is_replaced(storage_v1: k8s.StorageV1Api, cleanup: Cleanup) -> None:
    with_opts = cleanup.sc("pin-sc-41")
    storage_v1.create_storage_class(
        sc_model(
            nfs_storage_class(with_opts, "192.0.2.10", "/exports/dyn", ["nfsvers=4.1", "hard"])
        )
    )
    sc = storage_v1.read_storage_class(with_opts)
    assert version_options(sc.mount_options) == [PIN]
    assert others(sc.mount_options) == ["hard"]
    assert sc.provisioner == "nfs.csi.k8s.io"
    assert sc.parameters == {"server": "192.0.2.10", "share": "/exports/dyn"}

    without = cleanup.sc("pin-sc-none")
    storage_v1.create_storage_class(
        sc_model(nfs_storage_class(without, "192.0.2.10", "/exports/dyn2"))
    )
    assert storage_v1.read_storage_class(without).mount_options == [PIN]


def test_update_to_42_is_pinned(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("pin-on-update")
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/upd", [PIN, "hard"]))
    )
    assert stored_options(core_v1, name) == [PIN, "hard"]  # compliant: untouched
    core_v1.patch_persistent_volume(name, {"spec": {"mountOptions": ["nfsvers=4.2", "hard"]}})
    stored = stored_options(core_v1, name)
    assert version_options(stored) == [PIN]
    assert others(stored) == ["hard"]

    # A full replace (PUT) goes through the same admission.
    pv = core_v1.read_persistent_volume(name)
    assert pv.spec is not None
    pv.spec.mount_options = ["soft", "vers=4.1"]
    core_v1.replace_persistent_volume(name, pv)
    stored = stored_options(core_v1, name)
    assert version_options(stored) == [PIN]
    assert others(stored) == ["soft"]


def test_pin_tells_the_user_which_rule(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("pin-warning")
    data, status, headers = core_v1.create_persistent_volume_with_http_info(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/w", ["nfsvers=4.1"]))
    )
    assert status == 201
    assert data.spec is not None and data.spec.mount_options == [PIN]
    texts = warnings_of(headers)
    assert any("pin-filer" in w for w in texts), texts


def test_pinned_create_is_recorded_by_the_apiserver(
    control_plane: ControlPlane,
    module_webhook: WebhookServer,
    core_v1: k8s.CoreV1Api,
    cleanup: Cleanup,
) -> None:
    name = cleanup.pv("pin-audited")
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/aud", ["nfsvers=4.2"]))
    )
    log = control_plane.audit_log
    wait_until("the apiserver's audit event", lambda: bool(created(log, name)), 10)
    annotations = created(log, name)[-1].get("annotations") or {}
    mutation = [
        json.loads(v)
        for k, v in annotations.items()
        if k.startswith("mutation.webhook.admission.k8s.io/")
    ]
    assert any(m.get("mutated") is True for m in mutation), annotations
    # The server's own audit trail names the object too.
    trail = module_webhook.audit_log

    def recorded() -> bool:
        chains = slot_chains(str(trail))  # a chain per worker
        return any(name in Path(f).read_text() for _live, files in chains for f in files)

    wait_until("the server's audit record", recorded, 10)


# --- objects that must NOT change -----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [[PIN, "hard"], ["nfsvers=3", "nolock"], ["vers=4.0"]],
    ids=["explicit-4.0", "v3", "vers-4.0"],
)
def test_compliant_pv_is_stored_as_sent(
    core_v1: k8s.CoreV1Api, cleanup: Cleanup, options: list[str]
) -> None:
    name = cleanup.pv("compliant-" + "-".join(options).replace("=", "-").replace(".", "-"))
    data, status, headers = core_v1.create_persistent_volume_with_http_info(
        pv_model(nfs_pv(name, "192.0.2.10", "/exports/ok", options))
    )
    assert status == 201
    assert not [w for w in warnings_of(headers) if "pin-filer" in w]
    assert data.spec is not None and data.spec.mount_options == options
    assert stored_options(core_v1, name) == options


def test_export_no_rule_matches_is_stored_as_sent(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("no-rule")
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.99", "/x", ["nfsvers=4.2"])))
    assert stored_options(core_v1, name) == ["nfsvers=4.2"]


def test_non_nfs_pv_is_stored_as_sent(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("not-nfs")
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/srv/data"},
        },
    }
    data, status, headers = core_v1.create_persistent_volume_with_http_info(pv_model(body))
    assert status == 201
    assert data.spec is not None and data.spec.mount_options is None
    assert warnings_of(headers) == []


def test_exempt_wins_over_pin(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    exempt = cleanup.pv("exempt-labelled")
    core_v1.create_persistent_volume(
        pv_model(
            nfs_pv(
                exempt,
                "files.corp.example.test",
                "/vol",
                ["nfsvers=4.1"],
                labels={"e2e.nfsguard.io/exempt": "true"},
            )
        )
    )
    assert stored_options(core_v1, exempt) == ["nfsvers=4.1"]
    pinned = cleanup.pv("corp-unlabelled")
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(pinned, "files.corp.example.test", "/vol", ["nfsvers=4.1"]))
    )
    assert stored_options(core_v1, pinned) == [PIN]


# --- deny and warn reach the client ---------------------------------------------------------


def test_deny_reaches_the_client_with_the_rule(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("denied")
    with pytest.raises(k8s.ApiException) as exc:
        core_v1.create_persistent_volume(
            pv_model(nfs_pv(name, "192.0.2.20", "/legacy", ["nfsvers=4.1"]))
        )
    message = denial(exc)
    assert "denied the request" in message
    assert "deny-legacy-filer" in message
    with pytest.raises(k8s.ApiException) as gone:
        core_v1.read_persistent_volume(name)
    assert gone.value.status == 404


def test_deny_rule_admits_a_compliant_object(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("deny-rule-compliant")
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.20", "/legacy", [PIN])))
    assert stored_options(core_v1, name) == [PIN]


def test_on_explicit_deny(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    asked = cleanup.pv("strict-explicit")
    with pytest.raises(k8s.ApiException) as exc:
        core_v1.create_persistent_volume(
            pv_model(nfs_pv(asked, "192.0.2.30", "/s", ["nfsvers=4.2"], csi=True))
        )
    message = denial(exc)
    assert "denied the request" in message and "pin-strict-filer" in message
    # Not asked explicitly (negotiated): rewritten, not refused.
    implicit = cleanup.pv("strict-implicit")
    core_v1.create_persistent_volume(pv_model(nfs_pv(implicit, "192.0.2.30", "/s", ["hard"])))
    stored = stored_options(core_v1, implicit)
    assert version_options(stored) == [PIN]
    assert others(stored) == ["hard"]


def test_deny_on_update_keeps_the_stored_object(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("deny-on-update")
    core_v1.create_persistent_volume(pv_model(nfs_pv(name, "192.0.2.20", "/legacy", [PIN])))
    with pytest.raises(k8s.ApiException) as exc:
        core_v1.patch_persistent_volume(name, {"spec": {"mountOptions": ["nfsvers=4.2"]}})
    assert "deny-legacy-filer" in denial(exc)
    assert stored_options(core_v1, name) == [PIN]


def test_warning_reaches_the_client(core_v1: k8s.CoreV1Api, cleanup: Cleanup) -> None:
    name = cleanup.pv("warned")
    data, status, headers = core_v1.create_persistent_volume_with_http_info(
        pv_model(nfs_pv(name, "lab-nfs.example.test", "/lab", ["nfsvers=4.2"]))
    )
    assert status == 201
    texts = warnings_of(headers)
    assert any("warn-lab-filer" in w for w in texts), texts
    assert all(len(w) <= 256 for w in texts)
    assert data.spec is not None and data.spec.mount_options == ["nfsvers=4.2"]
    assert stored_options(core_v1, name) == ["nfsvers=4.2"]  # warn does not change it


def test_dry_run_is_mutated_but_not_stored(core_v1: k8s.CoreV1Api) -> None:
    pv = core_v1.create_persistent_volume(
        pv_model(nfs_pv("dry-run-pin", "192.0.2.10", "/exports/dry", ["nfsvers=4.2"])),
        dry_run="All",
    )
    assert pv.spec is not None and pv.spec.mount_options == [PIN]
    with pytest.raises(k8s.ApiException) as gone:
        core_v1.read_persistent_volume("dry-run-pin")
    assert gone.value.status == 404
