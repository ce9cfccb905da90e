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


# ------------------------------------------------------------- acceptance corpus
# For tests/e2e/policies/native-acceptance/ (written from docs/policy-authoring.md, not
# from the compiler): spellings the corpus above lacks, upper-case attribute keys, a
# driver no profile knows, and objects of drivers the native path leaves alone.

#: Spellings beyond OPTION_SETS: duplicates, blanks, case, empty entries, odd values.
ACCEPTANCE_OPTION_SETS: tuple[tuple[str, ...] | None, ...] = (
    None,
    (),
    ("",),
    ("hard",),
    ("nfsvers=4,minorversion=1",),
    ("v4.2",),
    ("v3",),
    ("vers=4.1,vers=4.2",),
    ("vers=4.2", "vers=4.2"),
    ("vers=4.1", "nfsvers=4.1"),
    (" vers=4.1 ",),
    ("nfsvers = 4.1",),
    ("hard", "", "nfsvers=4.1"),
    ("rw,hard,vers=4.1,timeo=600,retrans=2",),
    ("Vers=4.1",),
    ("V4.1",),
    ("NFSVERS=4.0",),
    ("minorversion=0",),
    ("vers=4,minorversion=2",),
    ("vers=4,minorversion=3",),
    ("minorversion=1,vers=4",),
    ("vers=4,minorversion=1,minorversion=0",),
    ("vers=3,minorversion=1",),
    ("nfsvers=4.0", "nfsvers=4.0"),
    ("hard,", ",nfsvers=4.1"),
    ("vers=4.0",),
    ("v4",),
    ("nfsvers=4.1=x",),
    ("=4.1",),
    ("noac", "lookupcache=none", "v4.1", "nconnect=8"),
    ("vers=2",),
    ("nfsvers=4.1 hard",),
    ("nfsvers=4.0,minorversion=1", "v4.0"),
    ("nfsvers=4.1", "nfsvers=3"),
)

#: (server, path, labels, storageClassName), named by the rule each one is for.
ACCEPTANCE_TARGETS: tuple[tuple[str, str, dict[str, str], str], ...] = (
    ("nas1.v41.example", "/x", {}, ""),  # exempt-v41-filers
    ("NAS2.V41.example.", "/x", {}, ""),  # the same, case and trailing dot
    ("nas10.v41.example", "/x", {}, ""),  # '?' is one character: warn
    ("10.20.1.1", "/a", {"example.com/no-pin": ""}, ""),  # exempt-opt-out over pin
    ("2001:db8:ab::5", "/v6", {}, ""),  # deny-lab-v6
    ("[2001:db8:ab::5]", "/v6", {}, ""),  # bracketed
    ("2001:DB8:AB:0:0:0:0:6", "/v6", {}, ""),  # upper case, not compressed
    ("2001:db8:ac::1", "/v6", {}, ""),  # outside the /48, inside ::/1: warn
    ("::ffff:a00:1", "/m", {}, ""),  # IPv4-mapped: CEL's ip() refuses it, the webhook's
    ("[::FFFF:10.0.0.2]", "/m", {}, ""),  # the same, dotted: the webhook's
    ("8000::1", "/v6", {}, ""),  # outside ::/1: pin-v6-upper-half
    ("10.30.0.5", "/scratch/tmp1", {}, ""),  # deny-scratch-paths
    ("10.30.0.5", "/scratch/tmp12", {}, ""),  # '?' is one character
    ("10.30.0.5", "/./scratch/./tmp1/.", {}, ""),  # '.' segments: the same path
    ("10.30.0.5", "/scratch/x/../tmp1", {}, ""),  # '..': left to the webhook
    ("10.30.0.5", "/scratch/tmp1", {"scratch-ok": "true"}, ""),  # its exclude
    ("10.20.3.3", "/data", {}, ""),  # pin-subnet-but-one
    ("10.20.4.4", "/data", {"unsupported": "deny"}, ""),  # pin-strict-unsupported
    ("10.20.5.9", "/data", {}, ""),  # its exclude: pin41-also-subnet decides
    ("10.20.3.3", "/data", {}, "v41-only"),  # excluded by class: pin 4.1
    ("filer.corp.example", "/exports/team1/data/x", {}, ""),  # pin-filer-paths
    ("FILER.corp.example", "/exports/team1/data", {}, ""),  # the directory itself
    ("filer.corp.example", "/exports/a/b/data", {}, ""),  # '*' does not cross '/'
    ("x.backup.corp.example", "/backups", {}, ""),  # pin-filer-paths, second export
    ("x.backup.corp.example", "/a/b", {}, ""),  # not its path
    ("172.16.1.1", "/p", {"env": "prod", "tier": "gold"}, "gold-nfs"),  # pin-classes
    ("172.16.1.1", "/p", {"env": "prod", "tier": "dev"}, "gold-nfs"),  # NotIn holds not
    ("172.16.1.1", "/p", {"env": "prod"}, "silver-nfs"),  # NotIn, key absent
    ("172.16.1.1", "/p", {"env": "prod", "team": "legacy"}, "silver-nfs"),  # 4.0 before 3
    ("172.16.1.2", "/p", {"team": "legacy"}, ""),  # pin3-team-legacy
    ("a.v41pin.example", "/p", {}, ""),  # pin41-cloud
    ("old.filer.example", "/p", {}, ""),  # a deny in Audit decides: nothing
    ("v3only-1.example", "/any/where", {}, ""),  # deny-v3-hosts
    ("v3only-1.example", "/any", {"team": "legacy"}, ""),  # deny over pin
    ("10.20.7.7", "/p", {"team": "legacy"}, ""),  # three pins match: the first decides
    ("nfs.unknown.example", "/p", {}, ""),  # warn only
    ("nfs1.classy.example", "/p", {}, ""),  # classy-pin: webhook-only (a class)
    ("nfs3.classy.example", "/p", {}, ""),  # outside the class: warn
    ("a.rollout.example", "/p", {"team": "legacy"}, ""),  # a pin in Audit over pin3: nothing
)

ACME = "csi.acme.example"


def _upper_keys(pv: Json) -> Json:
    """A csi-driver-nfs PV whose volumeAttributes keys are spelled in other cases."""
    attrs = pv["spec"]["csi"]["volumeAttributes"]
    pv["spec"]["csi"]["volumeAttributes"] = {
        {"server": "Server", "share": "SHARE", "mountOptions": "MountOptions"}.get(k, k): v
        for k, v in attrs.items()
    }
    return pv


def _csi(pv: Json, driver: str, attrs: dict[str, str]) -> Json:
    pv["spec"]["csi"]["driver"] = driver
    pv["spec"]["csi"]["volumeAttributes"] = attrs
    return pv


def _other_drivers(
    name: str,
    server: str,
    path: str,
    opts: tuple[str, ...] | None,
    labels: dict[str, str],
    sc: str,
) -> Iterator[Json]:
    """The same target on the other drivers the native path reads (policies/drivers/):
    ceph-nfs (4.1/4.2 only), dell-powerscale (3/4.0), democratic-csi (any CSI name with
    node_attach_driver=nfs), openebs-nfsrwx and nfs-ganesha in-tree PVs, and their
    StorageClasses (csi-driver-nfs with keys in other cases). No CSI PV carries the legacy
    annotation: the apiserver refuses it there ("may not specify mount options for this
    volume type")."""
    kw: Json = {"labels": labels, "storage_class": sc}

    def pv(suffix: str, csi: bool = True) -> Json:
        return nfs_pv(f"{name}-{suffix}", server, path, opts, csi=csi, **kw)

    def cls(suffix: str, provisioner: str, parameters: dict[str, str]) -> Json:
        out = nfs_storage_class(f"{name}-{suffix}", server, path, opts)
        out["provisioner"], out["parameters"] = provisioner, parameters
        out["metadata"]["labels"] = dict(labels)
        return out

    yield _csi(pv("ceph"), "rook-ceph.nfs.csi.ceph.com", {"server": server, "share": path})
    yield _csi(pv("dell"), "csi-isilon.dellemc.com", {"AzServiceIP": server, "Path": path})
    yield _csi(
        pv("democ"),
        "org.democratic-csi.truenas-nfs",
        {"node_attach_driver": "nfs", "server": server, "share": path},
    )
    for suffix, provisioner in (("oebs", "openebs.io/nfsrwx"), ("gan", "example.com/nfs")):
        tree = pv(suffix, csi=False)
        tree["metadata"]["annotations"] = {"pv.kubernetes.io/provisioned-by": provisioner}
        yield tree
    yield cls("csisc", "nfs.csi.k8s.io", {"Server": server, "SHARE": path, "subDir": "d"})
    yield cls("cephsc", "nfs.csi.ceph.com", {"server": server, "clusterID": "c"})
    yield cls("dellsc", "csi-isilon.dellemc.com", {"AzServiceIP": server})
    yield cls("oebssc", "openebs.io/nfsrwx", {})
    yield cls("democsc", "org.democratic-csi.nfs", {})


def _out_of_scope() -> Iterator[Json]:
    """Objects no rule may touch whatever they ask for: not NFS (hostPath, a block CSI
    driver, an EBS StorageClass) though in a class a rule pins, and NFS objects
    labelled with the opt-out nfsguard.io/skip=true."""
    asks = ["nfsvers=4.2"]
    host = nfs_pv("acc-out-hostpath", "x", "/x", asks, storage_class="standard")
    del host["spec"]["nfs"]
    host["spec"]["hostPath"] = {"path": "/tmp/x"}
    yield host
    ebs = nfs_pv("acc-out-ebs", "x", "/x", asks, csi=True, storage_class="standard")
    ebs["spec"]["csi"] = {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}
    yield ebs
    sc = nfs_storage_class("acc-out-ebs-sc", "10.20.3.3", "/data", asks)
    sc["provisioner"], sc["parameters"] = "ebs.csi.aws.com", {"type": "gp3"}
    yield sc
    skip = {"nfsguard.io/skip": "true"}
    yield nfs_pv("acc-out-skip", "10.20.3.3", "/data", asks, labels=skip)
    skipped = nfs_storage_class("acc-out-skip-sc", "10.20.3.3", "/data", asks)
    skipped["metadata"]["labels"] = dict(skip)
    yield skipped
    # in scope (csi-driver-nfs), no export known: only the class matches
    bare = nfs_pv("acc-noattrs", "10.20.3.3", "/data", asks, csi=True, storage_class="standard")
    del bare["spec"]["csi"]["volumeAttributes"]
    yield bare


def _large() -> Iterator[Json]:
    """Option text past the native path's size guard (more than 1,024 mountOptions
    entries, or more than 16 KiB of option text): left to the webhook. Past about 40 KB
    or 8,000 entries the apiserver's CEL cost limit would stop the evaluation, which
    failurePolicy Fail turns into a refusal of an object the webhook pins."""
    server, path = "10.20.3.3", "/data"
    many = ["hard"] * 2000 + ["vers=4.1"]
    text = "hard," * 12000 + "vers=4.1"
    yield nfs_pv("acc-large-entries", server, path, many)
    yield nfs_pv("acc-large-one-entry", server, path, [text])
    ann = nfs_pv("acc-large-ann", server, path, ["hard"])
    ann["metadata"]["annotations"] = {LEGACY: text}
    yield ann
    attr = nfs_pv("acc-large-attr", server, path, ["hard"], csi=True)
    attr["spec"]["csi"]["volumeAttributes"]["mountOptions"] = text
    yield attr
    yield nfs_storage_class("acc-large-sc", server, path, many)
    # just inside the guard: judged natively
    yield nfs_pv("acc-large-1024", server, path, ["hard"] * 1023 + ["vers=4.1"])


def acceptance_corpus() -> list[Json]:
    """The acceptance objects: every target with every spelling on an in-tree PV, and
    a rotating slice of the spellings on every other shape (annotation, csi-driver-nfs
    with upper-case keys and the mountOptions attribute, csi-driver-nfs StorageClass,
    a CSI driver no profile knows); subdir-provisioner classes and PVs by label; and
    objects of drivers whose profiles stay webhook-only (Longhorn, nfs-ganesha's
    StorageClass), which the native path must leave as they are."""
    sets = ACCEPTANCE_OPTION_SETS
    out: list[Json] = []
    classes: set[str] = set()
    for t, (server, path, labels, sc) in enumerate(ACCEPTANCE_TARGETS):
        kw: Json = {"labels": labels, "storage_class": sc}
        for o, opts in enumerate(sets):
            out.append(nfs_pv(f"acc-{t}-{o}-tree", server, path, opts, **kw))
        for k in range(6):
            o = (t * 5 + k * 7) % len(sets)
            opts = sets[o]
            joined = ",".join(opts or ())
            ann = nfs_pv(f"acc-{t}-{o}-ann", server, path, ["nfsvers=4.2"], **kw)
            ann["metadata"]["annotations"] = {LEGACY: joined}
            out.append(ann)
            out.append(_upper_keys(nfs_pv(f"acc-{t}-{o}-csi", server, path, opts, csi=True, **kw)))
            attr = nfs_pv(f"acc-{t}-{o}-attr", server, path, ["hard"], csi=True, **kw)
            attr["spec"]["csi"]["volumeAttributes"].update(mountOptions=joined, subdir="d")
            out.append(_upper_keys(attr))
            acme = nfs_pv(f"acc-{t}-{o}-acme", server, path, opts, csi=True, **kw)
            acme["spec"]["csi"]["driver"] = ACME
            out.append(acme)
            cls = nfs_storage_class(f"acc-{t}-{o}-sc", server, path, opts)
            cls["metadata"]["labels"] = dict(labels)
            if sc and sc not in classes:
                cls["metadata"]["name"] = sc
                classes.add(sc)
            out.append(cls)
        for k in range(2):
            o = (t * 3 + k * 11) % len(sets)
            out.extend(_other_drivers(f"acc-{t}-{o}", server, path, sets[o], labels, sc))
    out.extend(_out_of_scope())
    out.extend(_large())
    for o, opts in enumerate(sets[:12]):
        for tag, labels in (
            ("za", {"zone": "a"}),
            ("zc", {"zone": "c"}),
            ("legacy", {"zone": "b", "legacy": ""}),
        ):
            subdir = nfs_storage_class(f"acc-subdir-{tag}-{o}", "unused", "/unused", opts)
            subdir["provisioner"] = "k8s-sigs.io/nfs-subdir-external-provisioner"
            subdir["parameters"] = {"archiveOnDelete": "false"}
            subdir["metadata"]["labels"] = labels
            out.append(subdir)
            pv = nfs_pv(f"acc-subdir-pv-{tag}-{o}", "172.20.0.1", "/srv/x", opts, labels=labels)
            pv["metadata"]["annotations"] = {
                "pv.kubernetes.io/provisioned-by": "k8s-sigs.io/nfs-subdir-external-provisioner"
            }
            out.append(pv)
        # drivers the native path leaves to the webhook (their objects are not compared)
        # (in the class pin-standard-class pins: their export is not in the object)
        longhorn = nfs_pv(
            f"acc-longhorn-{o}", "10.20.3.3", "/data", opts, csi=True, storage_class="standard"
        )
        longhorn["spec"]["csi"]["driver"] = "driver.longhorn.io"
        out.append(longhorn)
        ganesha = nfs_storage_class(f"acc-ganesha-{o}", "10.20.3.3", "/data", opts)
        ganesha["provisioner"] = "example.com/nfs"
        ganesha["parameters"] = {"mountOptions": "vers=4.1"}
        if o == 0:
            ganesha["metadata"]["name"] = "standard"
        out.append(ganesha)
    return [copy.deepcopy(o) for o in out]
