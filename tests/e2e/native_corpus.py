"""The corpus both admission paths are compared on (tests/e2e/test_native.py): every
option spelling of docs/nfs-semantics.md, in every place options live, on each driver
shape the native compiler reads (in-tree PV, the legacy annotation, csi-driver-nfs PV
and its mountOptions attribute, csi-driver-nfs and subdir-provisioner StorageClasses),
against the exports, classes, labels and provisioners of tests/e2e/policies/native.yaml."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

from tests.e2e.kubecluster import nfs_pv, nfs_storage_class

Json = dict[str, Any]

LEGACY = "volume.beta.kubernetes.io/mount-options"

#: Every spelling docs/nfs-semantics.md lists, and the odd ones the engine judges.
OPTION_SETS: tuple[tuple[str, ...] | None, ...] = (
    None,
    (),
    ("hard",),
    ("nfsvers=4.2",),
    ("nfsvers=4.1,hard",),
    ("hard", "vers=4.1", "timeo=600"),
    ("vers=4",),
    ("v4",),
    ("vers=4,minorversion=0",),
    ("vers=4,minorversion=1",),
    ("minorversion=1",),
    ("minorversion=1,hard", "noatime"),
    ("vers=4.2,minorversion=0",),
    ("nfsvers=4.0,minorversion=1",),
    ("nfsvers=4.0", "hard", "timeo=600"),
    ("vers=4.1,nfsvers=4.0",),
    ("v4.2,nfsvers=4.0",),
    ("vers=4.1,vers=4.1",),
    ("v4.0",),
    ("v4.1",),
    ("v3",),
    ("nfsvers=3",),
    ("vers=2",),
    ("vers=4.3",),
    ("nfsvers=5",),
    ("NFSVERS=4.0",),
    (" nfsvers=4.0",),
    ("hard, nfsvers=4.0",),
    ("hard", "", "soft"),
    ("hard,,soft", "vers=4.2"),
    ("vers",),
    ("vers=",),
    (",",),
)

#: (server, path, labels, storageClassName) an object is made for.
TARGETS: tuple[tuple[str, str, dict[str, str], str], ...] = (
    ("192.168.100.7", "/data1/k8sdev/hl", {}, ""),  # pin-export
    ("192.168.100.7", "/data1/k8sdev", {}, ""),  # the directory itself
    ("192.168.100.7", "/data1//k8sdev/", {}, ""),  # normalised
    ("192.168.100.7", "/data2/backup", {}, ""),  # not the path: warn
    ("2001:db8::7", "/v6", {}, ""),  # IPv6, written without brackets
    ("10.77.3.4", "/exports", {}, ""),  # deny-cidr
    ("10.77.3.4", "/exports", {}, "legacy"),  # deny-cidr's exclude
    ("10.78.0.1", "/audit", {}, ""),  # deny in Audit: nothing
    ("filer.corp.example", "/home", {}, ""),  # pin-glob-strict
    ("FILER.Corp.Example.", "/home", {}, ""),  # case and trailing dot
    ("lab.nfs.example", "/x", {}, ""),  # exempt-lab
    ("filer.corp.example", "/home", {"nfs-exempt": "yes"}, ""),  # exempt-labelled
    ("172.16.0.9", "/any", {}, "nfs-ssd"),  # pin-class
    ("172.16.0.9", "/any", {"team": "legacy-v3"}, ""),  # pin 3
    ("nfs-box", "/srv", {}, ""),  # warn only
    ("acct.file.core.windows.net", "/acct/share", {}, ""),  # known-issues: exempt
    ("fs-1.efs.eu-west-1.amazonaws.com", "/", {}, ""),  # known-issues: exempt
)


def _pvs(
    name: str, server: str, path: str, labels: dict[str, str], sc: str, opts: Sequence[str] | None
) -> Iterator[Json]:
    yield nfs_pv(f"{name}-tree", server, path, opts, labels=labels, storage_class=sc)
    ann = nfs_pv(f"{name}-ann", server, path, opts, labels=labels, storage_class=sc)
    ann["metadata"]["annotations"] = {LEGACY: ",".join(opts or ("hard",))}
    yield ann
    yield nfs_pv(f"{name}-csi", server, path, opts, csi=True, labels=labels, storage_class=sc)
    attr = nfs_pv(f"{name}-attr", server, path, ["hard"], csi=True, labels=labels, storage_class=sc)
    attr["spec"]["csi"]["volumeAttributes"]["mountOptions"] = ",".join(opts or ("nconnect=4",))
    attr["spec"]["csi"]["volumeAttributes"]["subdir"] = "sub"
    yield attr


def corpus() -> list[Json]:
    """Every object, named uniquely (DNS-1123): PVs and StorageClasses."""
    out: list[Json] = []
    for t, (server, path, labels, sc) in enumerate(TARGETS):
        for o, opts in enumerate(OPTION_SETS):
            out.extend(_pvs(f"nat-{t}-{o}", server, path, labels, sc, opts))
        for o, opts in enumerate(OPTION_SETS[:12]):
            cls = nfs_storage_class(f"nat-{t}-{o}-sc", server, path, opts)
            cls["metadata"]["labels"] = dict(labels)
            if sc:
                cls["metadata"]["name"] = f"{sc}" if o == 0 else cls["metadata"]["name"]
            out.append(cls)
    for o, opts in enumerate(OPTION_SETS[:12]):
        for tier in ("gold", "bronze"):
            subdir = nfs_storage_class(f"nat-subdir-{tier}-{o}", "unused", "/unused", opts)
            subdir["provisioner"] = "cluster.local/nfs-subdir-external-provisioner"
            subdir["parameters"] = {"archiveOnDelete": "false"}
            subdir["metadata"]["labels"] = {"tier": tier}
            out.append(subdir)
            pv = nfs_pv(f"nat-subdir-pv-{tier}-{o}", "172.20.0.1", "/srv/x", opts)
            pv["metadata"]["labels"] = {"tier": tier}
            pv["metadata"]["annotations"] = {
                "pv.kubernetes.io/provisioned-by": "cluster.local/nfs-subdir-external-provisioner"
            }
            out.append(pv)
    return [copy.deepcopy(o) for o in out]
