"""NFS driver profiles: every driver of docs/drivers.md, with objects shaped as each
driver really creates them (its source or vendor docs, see
/work/shared/reference/nfs-drivers.md), through the real engine.

(Over 400 lines: one section per profiled driver of docs/drivers.md.)

For each driver: discovery (profile, export), the pin written where the node reads
it (and nowhere else a version hides), refusal of a version the driver's servers
cannot take, and, where the node uses mount.nfs, the real mount.nfs in fake mode
(``/sbin/mount.nfs 127.0.0.1:/x DIR -f -v -o OPTS``; never any other server) as an
independent oracle of the option string the node will mount with.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema
import pytest
import yaml

from tests.fixtures.mount_nfs import MOUNT_NFS, ask
from tests.support import engine_for, linted, load_policies, nfsguard
from webhook.admission.handler import decide
from webhook.admission.offline import offline_request
from webhook.api.decision import Decision, Outcome
from webhook.api.target import NFSTarget
from webhook.config.documents import PolicyError, parse_documents
from webhook.config.lint import unsafe_pin_warnings
from webhook.config.profiles import PROFILE_KIND, load_profiles
from webhook.engine.engine import Engine
from webhook.engine.pin import pin_plan
from webhook.engine.profiles import DriverProfiles
from webhook.engine.reading import read_target
from webhook.files import packaged
from webhook.nfs.inventory import UnknownInventory
from webhook.nfs.options import is_version_option, selected_version

REPO = Path(__file__).resolve().parents[3]
LEGACY = "volume.beta.kubernetes.io/mount-options"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
NO_NODES = UnknownInventory("unit test")

# ----------------------------------------------------------------- helpers


def policy(pin: str = "4.0", extra: str = "", match: str | None = None) -> str:
    """A blanket pin rule (no export filter): every in-scope object on an el7 node,
    and no inventory -> assumeAffected: the kind of rule that reaches every driver."""
    match = match or "      nodeKernels:\n      - family: el7\n"
    return (
        "apiVersion: nfsguard.io/v1alpha1\n"
        "kind: NFSMountPolicy\n"
        "metadata: {name: blanket}\n"
        "spec:\n"
        '  version: "1"\n'
        f'  pin: "{pin}"\n'
        "  rules:\n"
        "  - name: pin-everything\n"
        "    match:\n"
        f"{match}"
        "    action: pin\n"
        f"{extra}"
    )


def engine(text: str, *more: tuple[str, str]) -> Engine:
    sources = [("policy.yaml", text), *more]
    return engine_for(sources)


def run(eng: Engine, obj: Mapping[str, Any], operation: str = "CREATE") -> Decision:
    """The decision as the served webhook makes it (webhook.admission.handler.decide).

    Every patch is also held to what the engine derived without applying it: applied
    with jsonpatch and read again in full, the object mounts what the decision says."""
    decision = decide(eng, offline_request(obj, operation, "uid-1"), NO_NODES)
    if decision.patch:
        assert_patch_gives_the_decided_state(eng, obj, decision)
    return decision


def assert_patch_gives_the_decided_state(
    eng: Engine, obj: Mapping[str, Any], decision: Decision
) -> None:
    before, after = target(eng, obj), target(eng, apply(obj, decision))
    assert decision.after == after.effective_version(), (decision, after)
    plan = pin_plan(before, decision.after.version or "", "CREATE")
    assert before.node_options(plan.places) == after.node_options()


def apply(obj: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(dict(obj)), list(decision.patch))
    return patched


def target(eng: Engine, obj: Mapping[str, Any]) -> NFSTarget:
    found = eng.read(obj)
    assert found is not None, obj
    return found


def versions_in(options: list[str]) -> list[str]:
    return [o for o in options if selected_version(o) is not None]


def assert_pinned(eng: Engine, patched: Mapping[str, Any], pin: str) -> NFSTarget:
    """The invariant: the node mounts with exactly one version option, the pin, and no
    place the node does not read holds a version option either."""
    after = target(eng, patched)
    assert versions_in(after.node_options()) == [f"nfsvers={pin}"], after.node_options()
    for place in after.places:
        if not place.node_reads:
            assert not any(is_version_option(o) for o in place.options), place
    assert after.effective_version().version == pin
    # Reinvocation: the pinned object is compliant, no second patch.
    again = run(eng, patched)
    assert again.outcome is Outcome.COMPLIANT and not again.patch, again
    return after


def pv(
    name: str,
    *,
    csi: dict[str, Any] | None = None,
    nfs: dict[str, Any] | None = None,
    mount_options: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    access_modes: tuple[str, ...] = ("ReadWriteMany",),
    storage_class: str = "",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capacity": {"storage": "10Gi"},
        "accessModes": list(access_modes),
        "persistentVolumeReclaimPolicy": "Delete",
        "volumeMode": "Filesystem",
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    if csi is not None:
        spec["csi"] = csi
    if nfs is not None:
        spec["nfs"] = nfs
    if mount_options is not None:
        spec["mountOptions"] = mount_options
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec}


def sc(
    name: str,
    provisioner: str,
    parameters: dict[str, str] | None = None,
    mount_options: list[str] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    if parameters is not None:
        obj["parameters"] = parameters
    if mount_options is not None:
        obj["mountOptions"] = mount_options
    return obj


# --------------------------------------------------- mount.nfs fake-mode oracle


def mount_nfs(options: str, mountpoint: Path) -> tuple[str | None, str]:
    """(options mount.nfs would hand the kernel or None, its output)."""
    assert MOUNT_NFS is not None, "mount.nfs missing: `make system-deps` installs nfs-common"
    said = ask(options, mountpoint)
    return said.tried, said.output


def oracle_version(tried: str) -> str | None:
    """The version the kernel gets: the last version option (mount.nfs appends its choice)."""
    found = None
    for opt in tried.split(","):
        name, sep, value = opt.partition("=")
        if name in ("vers", "nfsvers") and sep:
            found = value
    return found


@pytest.fixture(scope="module")
def mountpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mnt")


def assert_mount_nfs_takes(node: NFSTarget, pin: str, mountpoint: Path) -> None:
    """The node's option string holds one version option, which mount.nfs accepts
    (no 'multiple version options') and hands the kernel as the pin."""
    options = ",".join(node.node_options())
    assert len(versions_in(node.node_options())) == 1, options
    tried, output = mount_nfs(options, mountpoint)
    assert "multiple version options" not in output, output
    if pin == "3":
        assert "portmap" in output and tried is None, output
        return
    assert tried is not None, output
    assert oracle_version(tried) == pin, (options, tried)


# ------------------------------------------------------------- the profiles

EVERY_DRIVER = {
    "in-tree-nfs",
    "csi-driver-nfs",
    "nfs-subdir-external-provisioner",
    "nfs-ganesha",
    "longhorn",
    "netapp-trident",
    "azure-files",
    "aws-efs",
    "gcp-filestore",
    "democratic-csi",
    "dell-powerscale",
    "ceph-nfs",
    "openebs-nfsrwx",
    "portworx-sharedv4",
}


def test_every_driver_of_the_reference_table_has_a_built_in_profile() -> None:
    assert {p.name for p in packaged.builtin_profiles()} == EVERY_DRIVER


def test_built_ins_are_the_documents_of_policies_drivers() -> None:
    files = sorted((REPO / "policies" / "drivers").glob("*.yaml"))
    shipped = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    assert shipped == [d for d in yaml.safe_load_all(packaged.builtin_text()) if d]


def test_every_shipped_profile_is_valid_against_the_published_schema() -> None:
    validator = jsonschema.Draft202012Validator(packaged.schema("nfsdriverprofile"))
    for doc in yaml.safe_load_all(packaged.builtin_text()):
        if doc:
            assert doc["kind"] == PROFILE_KIND
            assert not list(validator.iter_errors(doc)), doc["metadata"]["name"]
    published = REPO / "policies" / "schema" / "nfsdriverprofile.schema.json"
    assert yaml.safe_load(published.read_text()) == packaged.schema("nfsdriverprofile")


def test_make_run_policy_dir_still_loads_and_profiles_load_from_it() -> None:
    sources = [(str(p), p.read_text()) for p in sorted((REPO / "policies").glob("*.yaml"))]
    eng = engine_for(sources)
    assert len(eng.profiles) == len(EVERY_DRIVER)


# ------------------------------------------------------------------ drivers


def test_in_tree_pv_pins_into_spec_mount_options(mountpoint: Path) -> None:
    eng = engine(policy())
    obj = pv(
        "incident",
        nfs={"server": "192.168.100.7", "path": "/data1/k8sdev/hl"},
        mount_options=["nfsvers=4.2", "hard"],
    )
    t = target(eng, obj)
    assert (t.driver, t.server, t.path, t.pin_place) == (
        "in-tree-nfs",
        "192.168.100.7",
        "/data1/k8sdev/hl",
        "spec.mountOptions",
    )
    d = run(eng, obj)
    assert d.outcome is Outcome.MUTATED
    patched = apply(obj, d)
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0", "hard"]
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)


def test_in_tree_legacy_annotation_wins_over_spec_mount_options(mountpoint: Path) -> None:
    eng = engine(policy())
    obj = pv(
        "legacy",
        nfs={"server": "nfs1.example.corp", "path": "/exports"},
        mount_options=["vers=4.1"],
        annotations={LEGACY: "hard,vers=4.2"},
    )
    d = run(eng, obj)
    patched = apply(obj, d)
    assert patched["metadata"]["annotations"][LEGACY] == "hard,nfsvers=4.0"
    assert "mountOptions" not in patched["spec"]  # emptied entry disappears
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)


def test_csi_driver_nfs_pv_strips_the_mount_options_attribute_on_create(
    mountpoint: Path,
) -> None:
    eng = engine(policy())
    obj = pv(
        "pvc-1",
        csi={
            "driver": "nfs.csi.k8s.io",
            "volumeHandle": "10.0.0.5#/exports#pvc-1##",
            "volumeAttributes": {
                "Server": "10.0.0.5",
                "share": "/exports",
                "subdir": "pvc-1",
                "MountOptions": "vers=4.1,nconnect=4",
                "csi.storage.k8s.io/pv/name": "pvc-1",
            },
        },
        mount_options=["hard"],
    )
    t = target(eng, obj)
    assert (t.driver, t.server, t.path) == ("csi-driver-nfs", "10.0.0.5", "/exports/pvc-1")
    d = run(eng, obj)
    patched = apply(obj, d)
    assert patched["spec"]["mountOptions"] == ["hard", "nfsvers=4.0"]
    assert patched["spec"]["csi"]["volumeAttributes"]["MountOptions"] == "nconnect=4"
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)
    update = run(eng, obj, "UPDATE")  # volumeAttributes are immutable
    assert update.outcome is Outcome.WARNED and not update.patch


def test_subdir_provisioner_storage_class_and_its_in_tree_pvs() -> None:
    eng = engine(policy())
    klass = sc(
        "nfs-client",
        "k8s-sigs.io/nfs-subdir-external-provisioner",
        {"archiveOnDelete": "false"},
        ["nfsvers=4.2"],
    )
    t = target(eng, klass)
    assert (t.driver, t.server) == ("nfs-subdir-external-provisioner", None)
    patched = apply(klass, run(eng, klass))
    assert patched["mountOptions"] == ["nfsvers=4.0"]
    volume = pv(
        "pvc-2",
        nfs={"server": "10.0.0.9", "path": "/srv/nfs/default-data-pvc-2"},
        annotations={PROVISIONED_BY: "k8s-sigs.io/nfs-subdir-external-provisioner"},
    )
    t = target(eng, volume)
    assert t.driver == "in-tree-nfs"
    assert t.provisioner == "k8s-sigs.io/nfs-subdir-external-provisioner"
    assert apply(volume, run(eng, volume))["spec"]["mountOptions"] == ["nfsvers=4.0"]


def test_ganesha_deprecated_mount_options_parameter_and_legacy_annotation(
    mountpoint: Path,
) -> None:
    eng = engine(policy())
    # .mountOptions empty: the deprecated parameter is what reaches the PVs.
    klass = sc("ganesha", "cluster.local/nfs-nfs-server-provisioner", {"mountOptions": "vers=4.2"})
    t = target(eng, klass)
    assert (t.driver, t.pin_place) == ("nfs-ganesha", "parameters.mountOptions")
    d = run(eng, klass)
    assert apply(klass, d)["parameters"]["mountOptions"] == "nfsvers=4.0"
    assert run(eng, klass, "UPDATE").outcome is Outcome.WARNED  # parameters are immutable
    # The PV it provisions carries the parameter as the legacy annotation.
    volume = pv(
        "pvc-3",
        nfs={"server": "10.96.0.20", "path": "/export/pvc-3"},
        annotations={
            PROVISIONED_BY: "cluster.local/nfs-nfs-server-provisioner",
            LEGACY: "vers=4.2",
        },
    )
    assert target(eng, volume).driver == "nfs-ganesha"
    patched = apply(volume, run(eng, volume))
    assert patched["metadata"]["annotations"][LEGACY] == "nfsvers=4.0"
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)


LONGHORN_ATTRS = {
    "numberOfReplicas": "3",
    "staleReplicaTimeout": "2880",
    "fromBackup": "",
    "fsType": "ext4",
    "csi.storage.k8s.io/pv/name": "pvc-4",
    "storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-8081-driver.longhorn.io",
}


def longhorn_pv(**extra_attrs: str) -> dict[str, Any]:
    return pv(
        "pvc-4",
        csi={
            "driver": "driver.longhorn.io",
            "volumeHandle": "pvc-4",
            "fsType": "ext4",
            "volumeAttributes": {**LONGHORN_ATTRS, **extra_attrs},
        },
        storage_class="longhorn",
    )


def test_longhorn_without_nfs_options_uses_the_defaults_and_a_pin_writes_them_all(
    mountpoint: Path,
) -> None:
    eng = engine(policy())
    obj = longhorn_pv()
    t = target(eng, obj)
    assert (t.driver, t.pin_place) == ("longhorn", "spec.csi.volumeAttributes.nfsOptions")
    # No nfsOptions: the node mounts with the driver's defaults, vers=4.1 (affected).
    assert t.node_options() == ["vers=4.1", "noresvport", "timeo=600", "retrans=5", "softerr"]
    assert t.effective_version().version == "4.1"
    d = run(eng, obj)
    assert d.outcome is Outcome.MUTATED
    patched = apply(obj, d)
    # The complete set: the defaults, only the version replaced.
    assert (
        patched["spec"]["csi"]["volumeAttributes"]["nfsOptions"]
        == "nfsvers=4.0,noresvport,timeo=600,retrans=5,softerr"
    )
    after = assert_pinned(eng, patched, "4.0")
    assert_mount_nfs_takes(after, "4.0", mountpoint)


def test_longhorn_own_nfs_options_are_kept_except_the_version(mountpoint: Path) -> None:
    eng = engine(policy())
    obj = longhorn_pv(nfsOptions="vers=4.2,hard,timeo=50")
    patched = apply(obj, run(eng, obj))
    assert patched["spec"]["csi"]["volumeAttributes"]["nfsOptions"] == "nfsvers=4.0,hard,timeo=50"
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)


def test_longhorn_pv_only_on_create_and_storage_class_parameter() -> None:
    eng = engine(policy())
    update = run(eng, longhorn_pv(), "UPDATE")
    assert update.outcome is Outcome.WARNED and not update.patch
    assert "cannot change after creation" in update.message
    klass = sc(
        "longhorn",
        "driver.longhorn.io",
        {"numberOfReplicas": "3", "staleReplicaTimeout": "2880", "fromBackup": ""},
        ["nfsvers=4.2"],  # not used for the NFS mount, still cleaned
    )
    d = run(eng, klass)
    patched = apply(klass, d)
    assert (
        patched["parameters"]["nfsOptions"] == "nfsvers=4.0,noresvport,timeo=600,retrans=5,softerr"
    )
    assert "mountOptions" not in patched
    assert_pinned(eng, patched, "4.0")


def test_longhorn_storage_class_without_parameters_gets_the_map_created() -> None:
    eng = engine(policy())
    klass = sc("longhorn-bare", "driver.longhorn.io")
    patched = apply(klass, run(eng, klass))
    assert patched["parameters"] == {
        "nfsOptions": "nfsvers=4.0,noresvport,timeo=600,retrans=5,softerr"
    }


def test_longhorn_rwo_block_volumes_are_not_nfs_even_when_a_rule_names_the_driver() -> None:
    named = policy(match="      provisioners: [driver.longhorn.io]\n")
    obj = longhorn_pv()
    obj["spec"]["accessModes"] = ["ReadWriteOnce"]
    d = run(engine(named), obj)
    assert d.outcome is Outcome.IGNORED


TRIDENT_ATTRS = {
    "backendUUID": "4b2f6f2e-1c43-4a4c-9d6b-0e0f5c3c6f8a",
    "internalName": "trident_pvc_5",
    "name": "pvc-5",
    "protocol": "file",
    "storage.kubernetes.io/csiProvisionerIdentity": "1700000000000-8081-csi.trident.netapp.io",
}


def trident_pv(mount_options: list[str] | None = None, protocol: str = "file") -> dict[str, Any]:
    return pv(
        "pvc-5",
        csi={
            "driver": "csi.trident.netapp.io",
            "volumeHandle": "pvc-5",
            "volumeAttributes": {**TRIDENT_ATTRS, "protocol": protocol},
        },
        mount_options=mount_options,
        storage_class="ontap-nas",
    )


def test_trident_never_gets_a_lone_nfsvers_that_drops_the_backend_options() -> None:
    eng = engine(policy(pin="4.1"))
    obj = trident_pv()
    assert target(eng, obj).driver == "netapp-trident"
    d = run(eng, obj)
    assert d.outcome is Outcome.DENIED and not d.patch
    assert "nfsMountOptions" in d.message and "complete option set" in d.message
    assert any("incomplete pin" in n for n in d.notes)


def test_trident_complete_set_on_the_object_is_rewritten_in_place(mountpoint: Path) -> None:
    eng = engine(policy(pin="4.1"))
    obj = trident_pv(["nfsvers=4.2", "hard", "nconnect=8"])
    patched = apply(obj, run(eng, obj))
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.1", "hard", "nconnect=8"]
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.1"), "4.1", mountpoint)


def test_trident_4_0_is_refused_on_pvs_anf_cannot_speak_it() -> None:
    d = run(engine(policy()), trident_pv(["nfsvers=4.2", "hard"]))
    assert d.outcome is Outcome.WARNED and not d.patch
    assert "speak only NFS 3, 4.1" in d.message


def test_trident_operator_profile_with_the_backend_defaults_writes_the_complete_set(
    mountpoint: Path,
) -> None:
    site = (REPO / "policies" / "drivers" / "07-netapp-trident.yaml").read_text()
    site = site.replace('versions: ["3", "4.1"]', 'versions: ["3", "4.0", "4.1", "4.2"]')
    site = site.replace("  pinAdvice:", "  defaults: [nfsvers=4.1, hard, nconnect=4]\n  pinAdvice:")
    eng = engine(policy(), ("trident-site.yaml", site))
    assert eng.profiles.profiles[0].name == "netapp-trident"  # operator first, built-in gone
    assert sum(p.name == "netapp-trident" for p in eng.profiles) == 1
    obj = trident_pv()
    patched = apply(obj, run(eng, obj))
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0", "hard", "nconnect=4"]
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)


def test_trident_storage_classes_by_backend_type_and_block_volumes_out_of_scope() -> None:
    eng = engine(policy())
    ontap = sc(
        "ontap", "csi.trident.netapp.io", {"backendType": "ontap-nas"}, ["nfsvers=4.2", "hard"]
    )
    assert target(eng, ontap).versions == {"3", "4.0", "4.1", "4.2"}
    assert apply(ontap, run(eng, ontap))["mountOptions"] == ["nfsvers=4.0", "hard"]
    anf = sc("anf", "csi.trident.netapp.io", {"backendType": "azure-netapp-files"}, ["vers=4.1"])
    assert run(eng, anf).outcome is Outcome.WARNED
    san = sc("san", "csi.trident.netapp.io", {"backendType": "ontap-san"})
    assert run(eng, san).outcome is Outcome.IGNORED
    assert run(eng, trident_pv(protocol="block")).outcome is Outcome.IGNORED


def azure_pv(mount_options: list[str] | None = None, protocol: str = "nfs") -> dict[str, Any]:
    return pv(
        "pvc-6",
        csi={
            "driver": "file.csi.azure.com",
            "volumeHandle": "mc_rg#f1234account#pvc-6###default",
            "volumeAttributes": {
                "protocol": protocol,
                "storageAccount": "f1234account",
                "shareName": "pvc-6",
                "csi.storage.k8s.io/pv/name": "pvc-6",
            },
        },
        mount_options=mount_options,
        storage_class="azurefile-csi-nfs",
    )


def test_azure_files_is_never_pinned(mountpoint: Path) -> None:
    eng = engine(policy())
    obj = azure_pv(["nconnect=4", "actimeo=30"])
    t = target(eng, obj)
    assert (t.driver, t.server, t.path) == (
        "azure-files",
        "f1234account.file.core.windows.net",
        "/f1234account/pvc-6",
    )
    # The driver appends vers=4,minorversion=1,sec=sys: the mount is 4.1, and mount.nfs agrees.
    assert t.effective_version().version == "4.1"
    tried, output = mount_nfs(",".join(t.node_options()), mountpoint)
    assert tried is not None and oracle_version(tried) == "4.1", output
    # Why never: one more version option and mount.nfs refuses (exit 32, #1692).
    _, refused = mount_nfs(",".join([*t.node_options(), "nfsvers=4.0"]), mountpoint)
    assert "multiple version options not permitted" in refused
    d = run(eng, obj)
    assert d.outcome is Outcome.WARNED and not d.patch
    assert any(n.startswith("unsupported pin") for n in d.notes)
    assert "exempt" in d.message  # what to do instead
    pin_41 = run(engine(policy(pin="4.1")), obj)  # even 4.1: any version option breaks it
    assert pin_41.outcome is Outcome.WARNED and not pin_41.patch


def test_azure_files_deny_when_the_rule_says_so() -> None:
    strict = engine(policy(extra="    onUnsupportedPin: deny\n"))
    d = run(strict, azure_pv())
    assert d.outcome is Outcome.DENIED and not d.allowed
    assert "onUnsupportedPin: deny" in d.message


def test_azure_files_smb_shares_are_not_nfs() -> None:
    named = engine(policy(match="      provisioners: [file.csi.azure.com]\n"))
    assert run(named, azure_pv(protocol="smb")).outcome is Outcome.IGNORED
    klass = sc("azurefile", "file.csi.azure.com", {"skuName": "Standard_LRS"})
    assert run(named, klass).outcome is Outcome.IGNORED
    nfs_class = sc(
        "azurefile-nfs", "file.csi.azure.com", {"protocol": "nfs", "skuName": "Premium_LRS"}
    )
    assert run(named, nfs_class).outcome is Outcome.WARNED


def test_shipped_known_issues_exempt_azure_files_by_the_server_the_profile_derives() -> None:
    known = (REPO / "policies" / "known-issues.yaml").read_text()
    eng = engine(policy(), ("known-issues.yaml", known))
    d = run(eng, azure_pv())
    assert d.outcome is Outcome.EXEMPT


def efs_pv(handle: str, mount_options: list[str] | None = None) -> dict[str, Any]:
    return pv(
        "pvc-7",
        csi={"driver": "efs.csi.aws.com", "volumeHandle": handle},
        mount_options=mount_options,
        storage_class="efs-sc",
    )


def test_efs_export_from_the_volume_handle_and_default_version() -> None:
    eng = engine(policy())
    t = target(eng, efs_pv("fs-0123456789abcdef0:/data:fsap-0a1b2c3d4e5f67890", ["tls"]))
    assert (t.driver, t.server, t.path) == ("aws-efs", "fs-0123456789abcdef0", "/data")
    # efs-utils uses nfsvers=4.1 when no version is given.
    assert t.effective_version().version == "4.1" and t.effective_version().kind.value == "explicit"
    obj = efs_pv("fs-0123456789abcdef0::fsap-0a1b2c3d4e5f67890", ["tls", "iam"])
    patched = apply(obj, run(eng, obj))
    assert patched["spec"]["mountOptions"] == ["tls", "iam", "nfsvers=4.0"]
    assert_pinned(eng, patched, "4.0")
    assert run(engine(policy(pin="3")), obj).outcome is Outcome.WARNED  # EFS: 4.0 and 4.1


def filestore_pv(protocol: str | None) -> dict[str, Any]:
    attrs = {"ip": "10.117.0.2", "volume": "vol1"}
    if protocol:
        attrs["fileProtocol"] = protocol
    return pv(
        "pvc-8",
        csi={
            "driver": "filestore.csi.storage.gke.io",
            "volumeHandle": "modeInstance/us-central1-c/pvc-8/vol1",
            "volumeAttributes": attrs,
        },
        storage_class="standard-rwx",
    )


def test_filestore_pins_only_the_version_of_its_instance(mountpoint: Path) -> None:
    t = target(engine(policy()), filestore_pv("NFS_V4_1"))
    assert (t.driver, t.server, t.path, t.versions) == (
        "gcp-filestore",
        "10.117.0.2",
        "/vol1",
        frozenset({"4.1"}),
    )
    assert run(engine(policy()), filestore_pv(None)).outcome is Outcome.WARNED  # 4.0: never
    eng41 = engine(policy(pin="4.1"))
    obj = filestore_pv("NFS_V4_1")
    patched = apply(obj, run(eng41, obj))
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.1"]
    assert_mount_nfs_takes(assert_pinned(eng41, patched, "4.1"), "4.1", mountpoint)
    assert run(eng41, filestore_pv("NFS_V3")).outcome is Outcome.WARNED
    eng3 = engine(policy(pin="3"))
    v3 = filestore_pv("NFS_V3")
    patched3 = apply(v3, run(eng3, v3))
    assert_mount_nfs_takes(assert_pinned(eng3, patched3, "3"), "3", mountpoint)


def test_democratic_csi_is_found_by_its_node_attach_driver_whatever_its_name(
    mountpoint: Path,
) -> None:
    eng = engine(policy())
    for driver in ("org.democratic-csi.nfs", "truenas-nfs.csi.example.org"):
        obj = pv(
            "pvc-9",
            csi={
                "driver": driver,
                "volumeHandle": "pvc-9",
                "volumeAttributes": {
                    "node_attach_driver": "nfs",
                    "provisioner_driver": "freenas-api-nfs",
                    "server": "192.168.10.20",
                    "share": "/mnt/tank/k8s/nfs/v/pvc-9",
                },
            },
            mount_options=["noatime", "nfsvers=4"],
        )
        t = target(eng, obj)
        assert (t.driver, t.server, t.path) == (
            "democratic-csi",
            "192.168.10.20",
            "/mnt/tank/k8s/nfs/v/pvc-9",
        )
        patched = apply(obj, run(eng, obj))
        assert patched["spec"]["mountOptions"] == ["noatime", "nfsvers=4.0"]
        assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)
    iscsi = pv(
        "pvc-10",
        csi={
            "driver": "org.democratic-csi.iscsi",
            "volumeHandle": "pvc-10",
            "volumeAttributes": {"node_attach_driver": "iscsi", "portal": "192.168.10.20:3260"},
        },
    )
    assert run(eng, iscsi).outcome is Outcome.IGNORED


def test_powerscale_pins_4_0_and_refuses_4_1(mountpoint: Path) -> None:
    obj = pv(
        "k8s-2a3b4c5d6e",
        csi={
            "driver": "csi-isilon.dellemc.com",
            "volumeHandle": "k8s-2a3b4c5d6e=_=_=19=_=_=System=_=_=cluster1",
            "volumeAttributes": {
                "AccessZone": "System",
                "AzServiceIP": "10.230.24.10",
                "ClusterName": "cluster1",
                "ID": "19",
                "Name": "k8s-2a3b4c5d6e",
                "Path": "/ifs/data/csi/k8s-2a3b4c5d6e",
                "RootClientEnabled": "false",
            },
        },
        mount_options=["vers=4"],
    )
    eng = engine(policy())
    t = target(eng, obj)
    assert (t.driver, t.server, t.path) == (
        "dell-powerscale",
        "10.230.24.10",
        "/ifs/data/csi/k8s-2a3b4c5d6e",
    )
    patched = apply(obj, run(eng, obj))
    assert patched["spec"]["mountOptions"] == ["nfsvers=4.0"]
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)
    assert run(engine(policy(pin="4.1")), obj).outcome is Outcome.WARNED


def ceph_pv(driver: str) -> dict[str, Any]:
    return pv(
        "pvc-11",
        csi={
            "driver": driver,
            "volumeHandle": "0001-0009-rook-ceph-0000000000000001-ad1d5f5a",
            "volumeAttributes": {
                "clusterID": "rook-ceph",
                "fsName": "myfs",
                "nfsCluster": "my-nfs",
                "server": "rook-ceph-nfs-my-nfs-a.rook-ceph.svc",
                "share": "/0001-0009-rook-ceph-0000000000000001-ad1d5f5a",
                "subvolumeName": "csi-vol-ad1d5f5a",
            },
        },
    )


@pytest.mark.parametrize("driver", ["nfs.csi.ceph.com", "rook-ceph.nfs.csi.ceph.com"])
def test_ceph_nfs_is_never_pinned_below_4_1(driver: str, mountpoint: Path) -> None:
    obj = ceph_pv(driver)
    eng = engine(policy())
    t = target(eng, obj)
    assert (t.driver, t.server) == ("ceph-nfs", "rook-ceph-nfs-my-nfs-a.rook-ceph.svc")
    d = run(eng, obj)
    assert d.outcome is Outcome.WARNED and not d.patch
    assert "speak only NFS 4.1, 4.2, not 4.0" in d.message
    eng41 = engine(policy(pin="4.1"))
    patched = apply(obj, run(eng41, obj))
    assert_mount_nfs_takes(assert_pinned(eng41, patched, "4.1"), "4.1", mountpoint)


def test_openebs_nfsrwx_is_v4_only(mountpoint: Path) -> None:
    obj = pv(
        "pvc-12",
        nfs={"server": "10.96.51.23", "path": "/"},
        annotations={PROVISIONED_BY: "openebs.io/nfsrwx"},
        storage_class="openebs-rwx",
    )
    eng = engine(policy())
    assert target(eng, obj).driver == "openebs-nfsrwx"
    patched = apply(obj, run(eng, obj))
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)
    d = run(engine(policy(pin="3")), obj)
    assert d.outcome is Outcome.WARNED and "not 3" in d.message


def portworx_pv(**attrs: str) -> dict[str, Any]:
    return pv(
        "pvc-13",
        csi={
            "driver": "pxd.portworx.com",
            "volumeHandle": "1088394427417434951",
            "fsType": "ext4",
            "volumeAttributes": {"repl": "2", "sharedv4": "true", **attrs},
        },
        storage_class="px-sharedv4",
    )


def test_portworx_sharedv4_mount_options_attribute(mountpoint: Path) -> None:
    eng = engine(policy())
    obj = portworx_pv(sharedv4_svc_type="ClusterIP", sharedv4_mount_options="vers=4.2,actimeo=60")
    t = target(eng, obj)
    assert (t.driver, t.pin_place) == (
        "portworx-sharedv4",
        "spec.csi.volumeAttributes.sharedv4_mount_options",
    )
    patched = apply(obj, run(eng, obj))
    assert patched["spec"]["csi"]["volumeAttributes"]["sharedv4_mount_options"] == (
        "nfsvers=4.0,actimeo=60"
    )
    assert_mount_nfs_takes(assert_pinned(eng, patched, "4.0"), "4.0", mountpoint)
    assert run(eng, obj, "UPDATE").outcome is Outcome.WARNED
    # Plain sharedv4 (no service): NFSv3 only.
    plain = run(eng, portworx_pv())
    assert plain.outcome is Outcome.WARNED and "speak only NFS 3" in plain.message
    # Not sharedv4: not NFS at all.
    block = portworx_pv()
    del block["spec"]["csi"]["volumeAttributes"]["sharedv4"]
    assert run(eng, block).outcome is Outcome.IGNORED
    klass = sc(
        "px-sharedv4-svc",
        "pxd.portworx.com",
        {"repl": "2", "sharedv4": "true", "sharedv4_svc_type": "ClusterIP"},
    )
    assert apply(klass, run(eng, klass))["parameters"]["sharedv4_mount_options"] == "nfsvers=4.0"


def test_a_driver_no_profile_knows_named_in_a_rule_is_read_generically() -> None:
    eng = engine(policy(match="      provisioners: ['*.nfs.example.com']\n"))
    obj = pv(
        "pvc-14",
        csi={
            "driver": "fast.nfs.example.com",
            "volumeHandle": "x",
            "volumeAttributes": {"server": "10.1.1.1", "share": "/x"},
        },
        mount_options=["vers=4.2"],
    )
    t = target(eng, obj)
    assert (t.driver, t.server, t.path) == ("fast.nfs.example.com", "10.1.1.1", "/x")
    assert apply(obj, run(eng, obj))["spec"]["mountOptions"] == ["nfsvers=4.0"]
    other = copy.deepcopy(obj)
    other["spec"]["csi"]["driver"] = "ebs.csi.aws.com"
    assert run(eng, other).outcome is Outcome.IGNORED


# ------------------------------------------------- profiles as operator data


def test_operator_profile_in_a_policy_file_brings_a_new_driver_into_scope() -> None:
    vsphere = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: vsphere-file}
spec:
  persistentVolume:
    match:
      csiDrivers: [csi.vsphere.vmware.com]
      volumeAttributes: {type: "vSphere CNS File Volume"}
    mountOptions:
    - firstOf: [annotation, spec.mountOptions]
  versions: ["4.1"]
"""
    eng = engine(policy(pin="4.1"), ("vsphere.yaml", vsphere))
    obj = pv(
        "pvc-15",
        csi={
            "driver": "csi.vsphere.vmware.com",
            "volumeHandle": "file:53bf6fb7",
            "volumeAttributes": {"type": "vSphere CNS File Volume"},
        },
    )
    assert target(eng, obj).driver == "vsphere-file"
    assert apply(obj, run(eng, obj))["spec"]["mountOptions"] == ["nfsvers=4.1"]
    assert run(engine(policy()), obj).outcome is Outcome.IGNORED  # without the profile


def test_profile_problems_are_reported_with_positions_by_the_loader_and_lint() -> None:
    bad = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: broken}
spec:
  persistentVolume:
    match:
      csiDrivers: [x.example.com]
    mountOptions:
    - spec.csi.volumeAtributes
    - spec.nfs.server
  versions: ["4.5"]
"""
    with pytest.raises(PolicyError) as exc:
        engine(policy(), ("broken.yaml", bad))
    text = str(exc.value)
    assert "broken.yaml:11:" in text and "4.5" in text
    fixed = bad.replace('["4.5"]', '["4.1"]')
    problems = [str(p) for p in linted([("policy.yaml", policy()), ("broken.yaml", fixed)]).errors]
    assert any(p.startswith("broken.yaml:9:") and "not a field" in p for p in problems), problems
    assert any(
        p.startswith("broken.yaml:10:") and "cannot hold mount options" in p for p in problems
    )


def test_duplicate_profile_names_are_an_error() -> None:
    text = (REPO / "policies" / "drivers" / "12-ceph-nfs.yaml").read_text()
    docs = parse_documents(text + "---\n" + text, "dup.yaml")
    _, problems = load_profiles(docs, packaged.schemas().profile)
    assert any("duplicate driver profile name" in str(p) for p in problems)


def test_on_unsupported_pin_is_validated_and_only_for_pin() -> None:
    with pytest.raises(PolicyError):
        load_policies([("p.yaml", policy(extra="    onUnsupportedPin: maybe\n"))])
    warn_rule = policy(extra="    onUnsupportedPin: deny\n").replace("action: pin", "action: warn")
    result = linted([("p.yaml", warn_rule)])
    assert any("onUnsupportedPin applies only to action pin" in str(p) for p in result.warnings)


def test_lint_warns_when_a_blanket_pin_can_reach_drivers_that_cannot_take_it() -> None:
    policies = load_policies([("p.yaml", policy())])
    warnings = unsafe_pin_warnings(policies, packaged.builtin_profiles())
    assert len(warnings) == 1 and warnings[0].severity == "warning"
    text = str(warnings[0])
    for name in ("ceph-nfs", "azure-files", "gcp-filestore", "netapp-trident"):
        assert name in text
    assert "longhorn" not in text and "in-tree-nfs" not in text
    assert str(warnings[0]).startswith("p.yaml:8:")
    # Narrowed by an export, or excluding every driver that cannot take 4.0: no warning.
    exported = policy(match="      exports:\n      - server: 10.0.0.0/8\n")
    assert not unsafe_pin_warnings(
        load_policies([("p.yaml", exported)]), packaged.builtin_profiles()
    )
    excluded = policy(
        extra="    exclude:\n      provisioners: [csi.trident.netapp.io, file.csi.azure.com, "
        "filestore.csi.storage.gke.io, '*.nfs.csi.ceph.com', nfs.csi.ceph.com, pxd.portworx.com]\n"
    )
    assert not unsafe_pin_warnings(
        load_policies([("p.yaml", excluded)]), packaged.builtin_profiles()
    )
    # A rule naming only a driver that can take it: none either.
    longhorn = policy(match="      provisioners: [driver.longhorn.io]\n")
    assert not unsafe_pin_warnings(
        load_policies([("p.yaml", longhorn)]), packaged.builtin_profiles()
    )
    # ... and lint reports it.
    assert any("ceph-nfs" in str(w) for w in linted([("p.yaml", policy())]).warnings)


def test_read_target_reads_through_the_profiles_it_is_given() -> None:
    obj = ceph_pv("nfs.csi.ceph.com")
    t = read_target(obj, frozenset(), DriverProfiles(packaged.builtin_profiles()))
    assert t is not None and t.driver == "ceph-nfs"
    assert read_target(obj, frozenset(), DriverProfiles([])) is None


# ------------------------------------------------------------ policy explain


def explained(*args: str) -> str:
    result = nfsguard(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_policy_explain_says_why_a_pin_was_not_applied(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(policy())
    manifest = tmp_path / "ceph.yaml"
    manifest.write_text(yaml.safe_dump(ceph_pv("rook-ceph.nfs.csi.ceph.com")))
    base = ["policy", "explain", "--policy", str(tmp_path / "policy.yaml")]
    text = explained(*base, str(manifest))
    assert "driver:      ceph-nfs (provisioner rook-ceph.nfs.csi.ceph.com)" in text
    assert "servers:     speak NFS 4.1, 4.2" in text
    assert "outcome:     warned" in text
    assert "note:        unsupported pin: nfsvers=4.0 not applied" in text
    data = yaml.safe_load(explained(*base, "-o", "json", str(manifest)))
    first = data[0] if isinstance(data, list) else data
    assert first["serverVersions"] == ["4.1", "4.2"]
    assert first["notes"] and first["notes"][0].startswith("unsupported pin")
    # Azure Files: never pinned, and explain says so.
    manifest.write_text(yaml.safe_dump(azure_pv()))
    text = explained(*base, str(manifest))
    assert "never pinned: the driver sets the version" in text
    assert "vers=4,minorversion=1,sec=sys" in text  # what the node really mounts with


def test_a_deny_rule_never_advises_a_version_the_driver_cannot_take() -> None:
    deny = policy().replace("action: pin", "action: deny")
    d = run(engine(deny), ceph_pv("nfs.csi.ceph.com"))
    assert d.outcome is Outcome.DENIED
    assert "set nfsvers=4.0" not in d.message
    assert "speak only NFS 4.1, 4.2" in d.message and "exempt this driver" in d.message
    in_tree = pv("x", nfs={"server": "10.0.0.1", "path": "/x"})
    assert "set nfsvers=4.0" in run(engine(deny), in_tree).message


def test_invalid_globs_in_a_profile_are_problems_not_crashes() -> None:
    bad = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: globs}
spec:
  persistentVolume:
    match:
      csiDrivers: [x.example.com]
      volumeAttributes: {protocol: "[nfs"}
  versionsBy:
  - field: parameters.protocol
    values: {"[v3": ["3"]}
"""
    _, problems = load_profiles(parse_documents(bad, "globs.yaml"), packaged.schemas().profile)
    assert [str(p).split(":")[1] for p in problems] == ["8", "11"]
    assert all("invalid glob" in str(p) for p in problems)


def test_lint_does_not_warn_about_drivers_an_exempt_rule_takes_out_whole() -> None:
    exempt = policy(
        extra="  - name: azure-exempt\n"
        "    match:\n"
        "      provisioners: [file.csi.azure.com]\n"
        "    action: exempt\n"
    )
    (warning,) = unsafe_pin_warnings(
        load_policies([("p.yaml", exempt)]), packaged.builtin_profiles()
    )
    assert "azure-files" not in str(warning) and "ceph-nfs" in str(warning)
    # An exempt rule narrowed by anything else does not take the driver out whole.
    narrowed = exempt.replace(
        "      provisioners: [file.csi.azure.com]\n",
        "      provisioners: [file.csi.azure.com]\n      storageClassNames: [azurefile-nfs]\n",
    )
    (warning,) = unsafe_pin_warnings(
        load_policies([("p.yaml", narrowed)]), packaged.builtin_profiles()
    )
    assert "azure-files" in str(warning)
