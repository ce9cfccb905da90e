"""What depends on nfsguard being up: the generated matchConditions, evaluated by the
real kube-apiserver.

1. A recording webhook (HTTPS on 127.0.0.1, allows everything) is registered with the
   configuration ``nfsguard webhook-config`` generates; server-side dry-run creates of a
   corpus (every driver shape the engine knows, and non-NFS shapes) show which objects
   the apiserver sends: exactly those the engine reads as in scope.
2. The shipped configuration (manifests/gitops/90-webhook.yaml), failurePolicy Fail,
   pointed at a port where nothing listens: everything but NFS objects a policy names
   goes through, including PV binds, finalizer edits and deletions of NFS PVs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.kubecluster import (
    LOOPBACK,
    Cleanup,
    free_port,
    mwc_model,
    nfs_pv,
    pv_model,
    sc_model,
    wait_until,
    webhook_configuration_for,
)
from webhook import pki
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.files.sources import read_policy_sources
from webhook.registration.configuration import Endpoint, WebhookSettings, webhook_configuration

REPO = Path(__file__).resolve().parents[2]
Json = dict[str, Any]

EXTRA_POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: e2e-named-drivers
spec:
  version: "1"
  pin: "4.0"
  rules:
  - name: custom-driver
    match:
      provisioners: [custom.nfs.example.com, "*.files.example.org"]
    action: warn
"""


def engine_for(*paths: Path) -> Engine:
    loaded = load(
        read_policy_sources([str(p) for p in paths]),
        builtin_profiles=packaged.builtin_profiles(),
        schemas=packaged.schemas(),
    )
    return Engine(loaded.policies, loaded.profiles)


class Recorder:
    """An HTTPS admission webhook that allows everything and remembers what it saw."""

    def __init__(self, workdir: Path) -> None:
        ca = pki.generate_ca("nfsguard-e2e-recorder", valid_days=1)
        leaf = pki.issue_serving_cert(ca, dns_names=["localhost"], ip_addresses=[LOOPBACK])
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tls.crt").write_bytes(leaf.cert_pem)
        (workdir / "tls.key").write_bytes(leaf.key_pem)
        self.ca_pem = ca.cert_pem
        self.seen: list[tuple[str, str, str]] = []  # (resource, operation, name)
        self.port = free_port()
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                req = body["request"]
                obj = req.get("object") or {}
                seen.append(
                    (req["resource"]["resource"], req["operation"], obj["metadata"]["name"])
                )
                out = json.dumps(
                    {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "response": {"uid": req["uid"], "allowed": True},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(workdir / "tls.crt"), str(workdir / "tls.key"))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/mutate"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def csi_pv(name: str, driver: str, attrs: Json | None = None, modes: str = "ReadWriteMany") -> Json:
    csi: Json = {"driver": driver, "volumeHandle": f"h-{name}"}
    if attrs is not None:
        csi["volumeAttributes"] = attrs
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": [modes], "csi": csi},
    }


def storage_class(name: str, provisioner: str, parameters: Json | None = None) -> Json:
    out: Json = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
    }
    if parameters is not None:
        out["parameters"] = parameters
    return out


def other_pv(name: str, source: Json) -> Json:
    spec: Json = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], **source}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": spec,
    }


def corpus() -> list[Json]:
    """Every driver shape of the reference table (tests/unit/engine/test_drivers.py) and
    non-NFS shapes, each named for what it is."""
    ganesha = nfs_pv("c-ganesha", "10.0.0.5", "/export/v1", ["nfsvers=4.1"])
    ganesha["metadata"]["annotations"] = {"pv.kubernetes.io/provisioned-by": "example.com/nfs"}
    legacy = nfs_pv("c-legacy-annotation", "10.0.0.5", "/e")
    legacy["metadata"]["annotations"] = {"volume.beta.kubernetes.io/mount-options": "vers=4.2"}
    local = other_pv("c-local", {"local": {"path": "/mnt/disk"}})
    local["spec"]["nodeAffinity"] = {
        "required": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "k", "operator": "In", "values": ["n"]}]}
            ]
        }
    }
    # The apiserver allows the annotation only on volume types that take mount options.
    iscsi = {
        "iscsi": {"targetPortal": "10.0.0.9:3260", "iqn": "iqn.2001-04.com.example:d", "lun": 1}
    }
    ebs_legacy = other_pv("c-iscsi-legacy-annotation", iscsi)
    ebs_legacy["metadata"]["annotations"] = {"volume.beta.kubernetes.io/mount-options": "vers=4.2"}
    openebs = nfs_pv("c-openebs", "10.0.0.6", "/")
    openebs["metadata"]["annotations"] = {"pv.kubernetes.io/provisioned-by": "openebs.io/nfsrwx"}
    return [
        ebs_legacy,
        openebs,
        nfs_pv("c-in-tree", "10.0.0.5", "/export", ["nfsvers=4.2"]),
        ganesha,
        legacy,
        nfs_pv("c-csi-driver-nfs", "10.0.0.5", "/export", csi=True),
        csi_pv("c-longhorn-rwx", "driver.longhorn.io", {"share": "x"}),
        csi_pv("c-longhorn-rwo", "driver.longhorn.io", {}, modes="ReadWriteOnce"),
        csi_pv("c-trident-file", "csi.trident.netapp.io", {"protocol": "file"}),
        csi_pv("c-trident-block", "csi.trident.netapp.io", {"protocol": "block"}),
        csi_pv("c-azure-nfs", "file.csi.azure.com", {"Protocol": "nfs", "server": "a"}),
        csi_pv("c-azure-smb", "file.csi.azure.com", {"shareName": "s"}),
        csi_pv("c-efs", "efs.csi.aws.com"),
        csi_pv("c-filestore", "filestore.csi.storage.gke.io", {"ip": "10.1.1.1", "volume": "v"}),
        csi_pv("c-isilon", "csi-isilon.dellemc.com", {"AzServiceIP": "10.2.2.2", "Path": "/i"}),
        csi_pv("c-ceph-nfs", "nfs.csi.ceph.com", {"server": "s", "share": "/s"}),
        csi_pv("c-rook-ceph-nfs", "rook-ceph.nfs.csi.ceph.com", {"server": "s", "share": "/s"}),
        csi_pv("c-portworx-sharedv4", "pxd.portworx.com", {"sharedv4": "true"}),
        csi_pv("c-portworx-block", "pxd.portworx.com", {"sharedv4": "false"}),
        csi_pv("c-democratic-nfs", "org.democratic-csi.nfs", {"node_attach_driver": "nfs"}),
        csi_pv("c-democratic-iscsi", "org.democratic-csi.iscsi", {"node_attach_driver": "iscsi"}),
        csi_pv("c-custom-named", "custom.nfs.example.com", {"server": "s", "share": "/x"}),
        csi_pv("c-glob-named", "eu.files.example.org"),
        csi_pv("c-ebs", "ebs.csi.aws.com", {"fsType": "ext4"}),
        csi_pv("c-ceph-rbd", "rbd.csi.ceph.com", {"pool": "p"}),
        csi_pv("c-no-attributes", "pd.csi.storage.gke.io"),
        other_pv("c-hostpath", {"hostPath": {"path": "/tmp/x"}}),
        local,
        other_pv(
            "c-iscsi",
            {
                "iscsi": {
                    "targetPortal": "10.0.0.9:3260",
                    "iqn": "iqn.2001-04.com.example:disk",
                    "lun": 0,
                }
            },
        ),
        storage_class("c-sc-csi-nfs", "nfs.csi.k8s.io", {"server": "s", "share": "/x"}),
        storage_class("c-sc-subdir", "cluster.local/nfs-subdir-external-provisioner"),
        storage_class("c-sc-ganesha-helm", "cluster.local/x-nfs-server-provisioner"),
        storage_class("c-sc-openebs", "openebs.io/nfsrwx"),
        storage_class("c-sc-longhorn", "driver.longhorn.io"),
        storage_class("c-sc-trident-nas", "csi.trident.netapp.io", {"backendType": "ontap-nas"}),
        storage_class("c-sc-trident-san", "csi.trident.netapp.io", {"backendType": "ontap-san"}),
        storage_class("c-sc-azure-nfs", "file.csi.azure.com", {"protocol": "nfs"}),
        storage_class("c-sc-azure-smb", "file.csi.azure.com", {"skuName": "Premium_LRS"}),
        storage_class("c-sc-efs", "efs.csi.aws.com", {"fileSystemId": "fs-1"}),
        storage_class("c-sc-ceph-nfs", "openshift-storage.nfs.csi.ceph.com"),
        storage_class("c-sc-democratic", "org.democratic-csi.nfs"),
        storage_class("c-sc-custom", "custom.nfs.example.com"),
        storage_class("c-sc-gp3", "ebs.csi.aws.com", {"type": "gp3"}),
        storage_class("c-sc-rbd", "rbd.csi.ceph.com", {"pool": "p"}),
        storage_class("c-sc-no-provisioner-params", "kubernetes.io/no-provisioner"),
    ]


def dry_run_create(core: k8s.CoreV1Api, storage: k8s.StorageV1Api, obj: Json) -> None:
    if obj["kind"] == "PersistentVolume":
        core.create_persistent_volume(pv_model(obj), dry_run="All")
    else:
        storage.create_storage_class(sc_model(obj), dry_run="All")


@contextlib.contextmanager
def registered(admission: k8s.AdmissionregistrationV1Api, cfg: Json) -> Iterator[None]:
    admission.create_mutating_webhook_configuration(mwc_model(cfg))
    try:
        yield
    finally:
        admission.delete_mutating_webhook_configuration(cfg["metadata"]["name"])


def test_the_apiserver_sends_exactly_what_the_engine_reads(
    tmp_path: Path,
    core_v1: k8s.CoreV1Api,
    storage_v1: k8s.StorageV1Api,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(EXTRA_POLICY)
    engine = engine_for(REPO / "policies", extra)
    objects = corpus()
    expected = {o["metadata"]["name"] for o in objects if engine.read(o) is not None}
    assert "c-ebs" not in expected and "c-custom-named" in expected  # the corpus means it

    with Recorder(tmp_path / "rec") as rec:
        settings = WebhookSettings(name="nfsguard-e2e-blast", endpoint=Endpoint(url=rec.url))
        cfg = webhook_configuration(engine, settings, ca_bundle=rec.ca_pem)
        with registered(admissionregistration_v1, cfg):
            marker = nfs_pv("c-marker", "192.0.2.254", "/m")

            def live() -> bool:
                core_v1.create_persistent_volume(pv_model(marker), dry_run="All")
                return any(name == "c-marker" for _, _, name in rec.seen)

            wait_until("the recording webhook to be called", live)
            rec.seen.clear()
            for obj in objects:
                dry_run_create(core_v1, storage_v1, obj)
            reached = {name for _, _, name in rec.seen}
    assert sorted(reached) == sorted(expected)


SHIPPED_DOWN = "nfsguard-e2e-shipped-down"


def test_with_no_server_only_nfs_objects_a_policy_names_are_refused(
    core_v1: k8s.CoreV1Api,
    storage_v1: k8s.StorageV1Api,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    cleanup: Cleanup,
) -> None:
    # An NFS PV that exists before the webhook is registered (and will be bound,
    # finalized and deleted while it is down), and one with a finalizer.
    existing = cleanup.pv("down-existing-nfs")
    core_v1.create_persistent_volume(
        pv_model(nfs_pv(existing, "192.0.2.10", "/exports/e", ["nfsvers=4.2"]))
    )
    labelled = cleanup.pv("down-labelled-nfs")
    core_v1.create_persistent_volume(pv_model(nfs_pv(labelled, "192.0.2.10", "/exports/l")))
    nothing_listens = f"https://{LOOPBACK}:{free_port()}"
    cfg = webhook_configuration_for(nothing_listens, b"", name=SHIPPED_DOWN, failure_policy=None)
    for wh in cfg["webhooks"]:
        wh["clientConfig"].pop("caBundle", None)
        assert wh["failurePolicy"] == "Fail"
    probe = nfs_pv("down-probe", "192.0.2.10", "/exports/p", ["nfsvers=4.1"])

    def refused() -> bool:
        try:
            core_v1.create_persistent_volume(pv_model(probe), dry_run="All")
        except k8s.ApiException as e:
            return "failed calling webhook" in (e.body or "")
        return False

    with registered(admissionregistration_v1, cfg):
        wait_until("the shipped configuration to refuse an NFS PV", refused)

        # Non-NFS PVs and StorageClasses of other provisioners: created, edited, deleted.
        for obj in (
            csi_pv(cleanup.pv("down-ebs"), "ebs.csi.aws.com", {"fsType": "ext4"}),
            csi_pv(cleanup.pv("down-rbd"), "rbd.csi.ceph.com", {"pool": "p"}),
            other_pv(cleanup.pv("down-hostpath"), {"hostPath": {"path": "/tmp/x"}}),
        ):
            core_v1.create_persistent_volume(pv_model(obj))
            core_v1.patch_persistent_volume(
                obj["metadata"]["name"], {"metadata": {"labels": {"edited": "yes"}}}
            )
        gp3 = cleanup.sc("down-gp3")
        storage_v1.create_storage_class(
            sc_model(storage_class(gp3, "ebs.csi.aws.com", {"type": "gp3"}))
        )
        storage_v1.patch_storage_class(gp3, {"metadata": {"annotations": {"a": "b"}}})
        storage_v1.delete_storage_class(gp3)

        # The existing NFS PV: bound (claimRef), a finalizer added and removed, deleted.
        claim = {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "c", "uid": "u1"}
        core_v1.patch_persistent_volume(existing, {"spec": {"claimRef": claim}})
        core_v1.patch_persistent_volume(
            existing, {"metadata": {"finalizers": ["example.com/protect"]}}
        )
        core_v1.patch_persistent_volume(existing, {"metadata": {"finalizers": None}})
        core_v1.patch_persistent_volume(
            existing, {"metadata": {"finalizers": ["example.com/protect"]}}
        )
        core_v1.delete_persistent_volume(existing)  # Terminating: the finalizer holds it
        read = core_v1.read_persistent_volume(existing)
        assert read.metadata is not None and read.metadata.deletion_timestamp is not None
        core_v1.patch_persistent_volume(existing, {"metadata": {"finalizers": None}})
        wait_until("the deleted NFS PV to go", lambda: _gone(core_v1, existing))

        # NFS objects a policy names are refused (failurePolicy Fail): create and edit.
        with pytest.raises(k8s.ApiException) as exc:
            core_v1.create_persistent_volume(pv_model(probe))
        assert "failed calling webhook" in (exc.value.body or "")
        with pytest.raises(k8s.ApiException) as edit:
            core_v1.patch_persistent_volume(labelled, {"metadata": {"labels": {"x": "y"}}})
        assert "failed calling webhook" in (edit.value.body or "")
        with pytest.raises(k8s.ApiException):
            storage_v1.create_storage_class(
                sc_model(storage_class("down-nfs-sc", "nfs.csi.k8s.io", {"server": "s"}))
            )


def _gone(core: k8s.CoreV1Api, name: str) -> bool:
    try:
        core.read_persistent_volume(name)
    except k8s.ApiException as e:
        return bool(e.status == 404)
    return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
