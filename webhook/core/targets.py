"""Where an object keeps its NFS export and its mount options.

An ``NFSTarget`` says, for one PersistentVolume or StorageClass: which
driver handles it, which export it points at, every place mount options live
(and which of them the node will read), and where a pin must be written.

Rules implemented here (see docs/nfs-semantics.md):
- kubelet's MountOptionFromSpec (pkg/volume/util/util.go) uses the legacy
  annotation ``volume.beta.kubernetes.io/mount-options`` INSTEAD of
  ``spec.mountOptions`` when a PV carries it;
- csi-driver-nfs appends its ``mountOptions`` volume attribute (keys matched
  case-insensitively) to the mount flags;
- PV volume sources are immutable after creation, mountOptions and
  annotations are not.
"""

from __future__ import annotations

import posixpath
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.options import EffectiveVersion, effective_version, split_options
from webhook.core.scope import NodeScope, scope_of

LEGACY_ANNOTATION = "volume.beta.kubernetes.io/mount-options"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
CSI_DRIVER_NFS = "nfs.csi.k8s.io"
SUBDIR_PROVISIONER_SUFFIX = "nfs-subdir-external-provisioner"


class InvalidObject(ValueError):
    """The object is not shaped as the API would ever send it (a 400, not a 500)."""


@dataclass(frozen=True)
class OptionPlace:
    """One place mount options live on the object.

    ``pointer`` is the RFC 6901 path of the field; ``is_list`` tells a
    mountOptions list from a comma-joined string; ``present`` whether the field
    exists on the object; ``node_reads`` whether the node mounts with it;
    ``mutable`` whether it may change on UPDATE.
    """

    label: str
    pointer: str
    is_list: bool
    entries: tuple[str, ...]
    present: bool
    node_reads: bool
    mutable: bool = True

    @property
    def options(self) -> list[str]:
        return split_options(self.entries)


@dataclass(frozen=True)
class NFSTarget:
    kind: str  # PersistentVolume | StorageClass
    name: str
    driver: str  # which driver profile read it
    provisioner: str | None  # SC .provisioner, PV .spec.csi.driver (or provisioned-by)
    server: str | None
    path: str | None
    storage_class: str | None
    labels: Mapping[str, str]
    places: tuple[OptionPlace, ...]
    pin_place: str  # label of the place a pin is written to
    scope: NodeScope

    def node_options(self) -> list[str]:
        """The options the node will mount with, in the order it reads them."""
        return [opt for place in self.places if place.node_reads for opt in place.options]

    def effective_version(self) -> EffectiveVersion:
        return effective_version(self.node_options())

    def place(self, label: str) -> OptionPlace:
        return next(p for p in self.places if p.label == label)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidObject(f"{where} must be an object")
    return value


def _string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidObject(f"{where} must be a string")
    return value


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidObject(f"{where} must be a list of strings")
    return tuple(value)


def _string_map(value: Any, where: str) -> Mapping[str, str]:
    mapping = _mapping(value, where)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise InvalidObject(f"{where}.{key} must be a string")
    return mapping


def normalise_path(path: str | None) -> str | None:
    """An export path as the server would read it: no duplicate or trailing slashes."""
    if not path:
        return path
    norm = posixpath.normpath(path)
    return "/" if norm == "//" else norm


def _join(share: str | None, subdir: str | None) -> str | None:
    if share is None:
        return None
    if not subdir:
        return normalise_path(share)
    return normalise_path(share.rstrip("/") + "/" + subdir.lstrip("/"))


def _get_ci(mapping: Mapping[str, str], key: str) -> tuple[str, str] | None:
    """(actual key, value) for ``key`` matched case-insensitively (csi-driver-nfs does)."""
    for k, v in mapping.items():
        if k.lower() == key:
            return k, v
    return None


def _metadata(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, str], Mapping[str, str]]:
    meta = _mapping(obj.get("metadata"), "metadata")
    name = _string(meta.get("name"), "metadata.name")
    if not name:
        generate = _string(meta.get("generateName"), "metadata.generateName")
        name = f"{generate}*" if generate else ""
    labels = _string_map(meta.get("labels"), "metadata.labels")
    annotations = _string_map(meta.get("annotations"), "metadata.annotations")
    return name, labels, annotations


def is_nfs_provisioner(provisioner: str, extra: Container[str]) -> bool:
    return (
        provisioner == CSI_DRIVER_NFS
        or provisioner.endswith(SUBDIR_PROVISIONER_SUFFIX)
        or provisioner in extra
    )


def _pv_target(obj: Mapping[str, Any], extra_drivers: Container[str]) -> NFSTarget | None:
    name, labels, annotations = _metadata(obj)
    spec = _mapping(obj.get("spec"), "spec")
    mount_options = _string_list(spec.get("mountOptions"), "spec.mountOptions")
    storage_class = _string(spec.get("storageClassName"), "spec.storageClassName")
    nfs = spec.get("nfs")
    csi = spec.get("csi")
    csi_attr_place: OptionPlace | None = None
    if nfs is not None:
        nfs_source = _mapping(nfs, "spec.nfs")
        driver = "in-tree-nfs"
        server = _string(nfs_source.get("server"), "spec.nfs.server")
        path = normalise_path(_string(nfs_source.get("path"), "spec.nfs.path"))
        provisioner = annotations.get(PROVISIONED_BY)
    elif csi is not None:
        csi_source = _mapping(csi, "spec.csi")
        provisioner = _string(csi_source.get("driver"), "spec.csi.driver")
        if provisioner is None or not (
            provisioner == CSI_DRIVER_NFS or provisioner in extra_drivers
        ):
            return None
        driver = "csi-driver-nfs" if provisioner == CSI_DRIVER_NFS else provisioner
        attrs = _string_map(csi_source.get("volumeAttributes"), "spec.csi.volumeAttributes")
        found_server = _get_ci(attrs, "server")
        found_share = _get_ci(attrs, "share")
        found_subdir = _get_ci(attrs, "subdir")
        server = found_server[1] if found_server else None
        path = _join(
            found_share[1] if found_share else None, found_subdir[1] if found_subdir else None
        )
        found_opts = _get_ci(attrs, "mountoptions")
        if found_opts is not None and provisioner == CSI_DRIVER_NFS:
            key, value = found_opts
            csi_attr_place = OptionPlace(
                label="spec.csi.volumeAttributes.mountOptions",
                pointer="/spec/csi/volumeAttributes/" + _escape(key),
                is_list=False,
                entries=(value,),
                present=True,
                node_reads=True,
                mutable=False,  # the PV volume source is immutable after creation
            )
    else:
        return None
    annotation = annotations.get(LEGACY_ANNOTATION)
    places = [
        OptionPlace(
            label="annotation",
            pointer="/metadata/annotations/" + _escape(LEGACY_ANNOTATION),
            is_list=False,
            entries=(annotation,) if annotation is not None else (),
            present=annotation is not None,
            node_reads=annotation is not None,
        ),
        OptionPlace(
            label="spec.mountOptions",
            pointer="/spec/mountOptions",
            is_list=True,
            entries=mount_options,
            present="mountOptions" in spec and spec.get("mountOptions") is not None,
            node_reads=annotation is None,
        ),
    ]
    if csi_attr_place is not None:
        places.append(csi_attr_place)
    return NFSTarget(
        kind="PersistentVolume",
        name=name,
        driver=driver,
        provisioner=provisioner,
        server=server,
        path=path,
        storage_class=storage_class,
        labels=labels,
        places=tuple(places),
        pin_place="annotation" if annotation is not None else "spec.mountOptions",
        scope=scope_of(obj),
    )


def _sc_target(obj: Mapping[str, Any], extra_provisioners: Container[str]) -> NFSTarget | None:
    name, labels, _ = _metadata(obj)
    provisioner = _string(obj.get("provisioner"), "provisioner")
    if provisioner is None or not is_nfs_provisioner(provisioner, extra_provisioners):
        return None
    params = _string_map(obj.get("parameters"), "parameters")
    mount_options = _string_list(obj.get("mountOptions"), "mountOptions")
    if provisioner.endswith(SUBDIR_PROVISIONER_SUFFIX):
        # The subdir provisioner keeps server and path in its Deployment, not here.
        driver, server, path = "nfs-subdir-external-provisioner", None, None
    else:
        driver = "csi-driver-nfs" if provisioner == CSI_DRIVER_NFS else provisioner
        found_server = _get_ci(params, "server")
        found_share = _get_ci(params, "share")
        found_subdir = _get_ci(params, "subdir")
        server = found_server[1] if found_server else None
        path = _join(
            found_share[1] if found_share else None, found_subdir[1] if found_subdir else None
        )
    place = OptionPlace(
        label="mountOptions",
        pointer="/mountOptions",
        is_list=True,
        entries=mount_options,
        present=obj.get("mountOptions") is not None,
        node_reads=True,
    )
    return NFSTarget(
        kind="StorageClass",
        name=name,
        driver=driver,
        provisioner=provisioner,
        server=server,
        path=path,
        storage_class=name,
        labels=labels,
        places=(place,),
        pin_place="mountOptions",
        scope=scope_of(obj),
    )


def read_target(
    obj: Mapping[str, Any], extra_provisioners: Container[str] = frozenset()
) -> NFSTarget | None:
    """The NFS target of a PV or StorageClass, or None when the object is out of scope.

    ``extra_provisioners`` are the provisioners/CSI drivers named in loaded rules,
    which bring their objects into scope too.
    """
    if not isinstance(obj, Mapping):
        raise InvalidObject("object must be a JSON object")
    kind = obj.get("kind")
    if kind == "PersistentVolume":
        return _pv_target(obj, extra_provisioners)
    if kind == "StorageClass":
        return _sc_target(obj, extra_provisioners)
    return None
