"""Reading one PersistentVolume or StorageClass through its driver profile.

``read_target`` is one pass over the object, in this order:

1. metadata and the driver: what names it (a CSI PV's ``spec.csi.driver``, a
   StorageClass's ``provisioner``, an in-tree PV's provisioned-by annotation) and
   where its attributes are (volumeAttributes or parameters);
2. the profile that reads it: the candidates ``DriverProfiles`` files under that
   kind and name (webhook/engine/profiles.py), the first whose ``match`` holds;
   a driver no profile knows is read generically when a rule names it;
3. the rest of the shape checks (only now: an object out of scope is never judged);
4. the export (server, share and subdir joined), every option place
   (webhook/engine/places.py), the versions the server speaks, the node scope.

Which fields those are for each driver is data: ``webhook.api.profile`` profiles
(in-tree NFS, csi-driver-nfs and the subdir provisioner among them,
docs/drivers.md). The result is an ``NFSTarget`` (webhook/api/target.py).
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Container, Mapping, Sequence
from functools import lru_cache
from typing import Any

from webhook.api.kube import JSON_OBJECT, PROVISIONED_BY, ObjectKind
from webhook.api.profile import (
    ALL_VERSIONS,
    DriverProfile,
    FieldRef,
    KindRules,
    ObjectMatch,
    PinMode,
    PlaceSpec,
    ValueCondition,
    ValueSource,
)
from webhook.api.target import InvalidObject, NFSTarget
from webhook.engine.node_scope import scope_of
from webhook.engine.places import option_places
from webhook.engine.profiles import DriverProfiles
from webhook.engine.view import (
    ObjectView,
    lenient_map,
    mapping,
    string,
    string_list,
    string_map,
)
from webhook.nfs.patterns import NamePattern


def _csi_attr(key: str) -> FieldRef:
    return FieldRef("spec.csi.volumeAttributes." + key)


#: How an object of a driver named in a rule but known to no profile is read
#: (the export as csi-driver-nfs records it, options where kubelet reads them).
GENERIC_PV = KindRules(
    match=ObjectMatch(),
    server=(ValueSource(_csi_attr("server")),),
    path=(ValueSource(_csi_attr("share")),),
    subdir=(ValueSource(_csi_attr("subdir")),),
    places=(PlaceSpec((FieldRef("annotation"), FieldRef("spec.mountOptions"))),),
)
GENERIC_SC = KindRules(
    match=ObjectMatch(),
    server=(ValueSource(FieldRef("parameters.server")),),
    path=(ValueSource(FieldRef("parameters.share")),),
    subdir=(ValueSource(FieldRef("parameters.subdir")),),
    places=(PlaceSpec((FieldRef("mountOptions"),)),),
)


def read_target(
    obj: Mapping[str, Any],
    extra_provisioners: Container[str],
    profiles: DriverProfiles,
) -> NFSTarget | None:
    """The NFS target of a PV or StorageClass, or None when the object is out of scope.

    An object is in scope when a driver profile reads it (``profiles``), or when it
    is a CSI PV / StorageClass of a driver no profile knows that is named in
    ``extra_provisioners`` (the provisioners/CSI drivers named in loaded rules). A
    driver a profile names exactly, whose match the object fails, is not NFS (e.g. an
    Azure Files SMB share) and stays out of scope. Raises InvalidObject for an object
    no apiserver would send.
    """
    if not isinstance(obj, JSON_OBJECT):
        raise InvalidObject("object must be a JSON object")
    kind = obj.get("kind")
    if kind != "PersistentVolume" and kind != "StorageClass":
        return None
    return _read(kind, obj, extra_provisioners, profiles)


def read_inline_csi(csi: Mapping[str, Any], profiles: DriverProfiles) -> NFSTarget | None:
    """A pod spec's CSI inline volume source (``volumes[].csi``: driver, volumeAttributes)
    read as the PV it stands for, by a profile that marks its driver ``inlineVolumes``;
    None when none does. Only volumeAttributes places exist on an inline volume (it has
    no spec.mountOptions and no annotations); the caller moves the pointers under the
    volume (webhook/engine/pod_volumes.py)."""
    shaped = {"kind": "PersistentVolume", "metadata": {}, "spec": {"csi": csi}}
    return _read("PersistentVolume", shaped, (), profiles, inline=True)


def _read(
    kind: ObjectKind,
    obj: Mapping[str, Any],
    extra: Container[str],
    profiles: DriverProfiles,
    *,
    inline: bool = False,
) -> NFSTarget | None:
    # 1. Metadata, and what names the driver.
    name, labels, annotations = metadata_of(obj)
    in_tree = False
    fields: Mapping[str, Any]
    if kind == "PersistentVolume":
        fields = mapping(obj.get("spec"), "spec")
        string_list(fields.get("mountOptions"), "spec.mountOptions")
        storage_class = string(fields.get("storageClassName"), "spec.storageClassName")
        nfs, csi = fields.get("nfs"), fields.get("csi")
        if nfs is not None:
            nfs_source = mapping(nfs, "spec.nfs")
            string(nfs_source.get("server"), "spec.nfs.server")
            string(nfs_source.get("path"), "spec.nfs.path")
            provisioner = annotations.get(PROVISIONED_BY)
            raw_attrs: Any = {}
            in_tree = True
        elif csi is not None:
            csi_source = mapping(csi, "spec.csi")
            provisioner = string(csi_source.get("driver"), "spec.csi.driver")
            if provisioner is None:
                return None
            raw_attrs = csi_source.get("volumeAttributes")
        else:
            return None
        where = "spec.csi.volumeAttributes"
    else:
        fields = obj
        provisioner = string(obj.get("provisioner"), "provisioner")
        if provisioner is None:
            return None
        storage_class = name
        raw_attrs = obj.get("parameters")
        where = "parameters"
    lenient = lenient_map(raw_attrs)
    view = ObjectView(kind, obj, fields, annotations, lenient)

    # 2. The profile that reads it.
    profile: DriverProfile | None = None
    for candidate, match in profiles.candidates(kind, provisioner, in_tree=in_tree):
        if inline and not candidate.inline_volumes:
            continue
        if _holds(match, view, provisioner, in_tree=in_tree):
            profile = candidate
            break
    rules: KindRules | None
    if profile is not None:
        rules = profile.rules_for(kind)
        driver = profile.name
    elif (
        inline
        or in_tree
        or provisioner is None
        or provisioner not in extra
        or profiles.claims(kind, provisioner)
    ):
        return None
    else:
        rules = GENERIC_PV if kind == "PersistentVolume" else GENERIC_SC
        driver = provisioner
    assert rules is not None
    if inline:  # only the volume source is there: its attribute places
        rules = dataclasses.replace(
            rules,
            places=tuple(p for p in rules.places if all(f.key is not None for f in p.fields)),
        )

    # 3. In scope: now the object must be shaped as the API sends it.
    if lenient is not raw_attrs:  # else every entry is a string already: the view stands
        view.attributes = string_map(raw_attrs, where)
    if kind == "StorageClass":
        string_list(obj.get("mountOptions"), "mountOptions")

    # 4. Export, option places, server versions, node scope.
    server = view.resolve(rules.server)
    path = _join(view.resolve(rules.path), view.resolve(rules.subdir))
    places, pin_place = option_places(rules, view)
    return NFSTarget(
        kind=kind,
        name=name,
        driver=driver,
        provisioner=provisioner,
        server=server,
        path=path,
        storage_class=storage_class,
        labels=labels,
        places=tuple(places),
        pin_place=pin_place or "",
        scope=scope_of(obj),
        versions=_server_versions(profile, view) if profile is not None else ALL_VERSIONS,
        defaults=profile.defaults if profile is not None else (),
        appends=profile.appends if profile is not None else (),
        default_version=profile.default_version if profile is not None else None,
        pin_mode=profile.pin if profile is not None else PinMode.WRITE,
        pin_advice=profile.pin_advice if profile is not None else "",
    )


def metadata_of(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, str], Mapping[str, str]]:
    meta = mapping(obj.get("metadata"), "metadata")
    name = string(meta.get("name"), "metadata.name")
    if not name:
        generate = string(meta.get("generateName"), "metadata.generateName")
        name = f"{generate}*" if generate else ""
    labels = string_map(meta.get("labels"), "metadata.labels")
    annotations = string_map(meta.get("annotations"), "metadata.annotations")
    return name, labels, annotations


# ------------------------------------------------------- which profile reads it


def _holds(m: ObjectMatch, view: ObjectView, driver: str | None, *, in_tree: bool) -> bool:
    """Whether a profile's ``match`` holds for the object; ``driver`` is what names the
    driver (for an in-tree PV its provisioned-by annotation, which may be absent)."""
    if view.kind == "PersistentVolume":
        if in_tree:
            if not m.in_tree:
                return False
            if m.provisioned_by and not _any_matches(m.provisioned_by, driver):
                return False
        elif not _any_matches(m.csi_drivers, driver):
            return False
        if m.access_modes:
            modes = view.fields.get("accessModes")
            if not isinstance(modes, list) or not any(a in modes for a in m.access_modes):
                return False
    elif not _any_matches(m.provisioners, driver):
        return False
    return not m.conditions or all(_condition_holds(c, view.attributes) for c in m.conditions)


def _any_matches(patterns: Sequence[NamePattern], name: str | None) -> bool:
    # A loop, not any(generator): this runs for every profile tried on every object.
    for pattern in patterns:  # noqa: SIM110
        if pattern.matches(name):
            return True
    return False


def _condition_holds(cond: ValueCondition, attributes: Mapping[str, str]) -> bool:
    for k, v in attributes.items():
        if k.lower() == cond.key:
            return not cond.values or any(p.matches(v) for p in cond.values)
    return False


def _server_versions(profile: DriverProfile, view: ObjectView) -> frozenset[str]:
    """The versions the object's server speaks: the first ``versionsBy`` whose field
    has a value that one of its keys matches, else the profile's ``versions``."""
    for by in profile.versions_by:
        value = view.string(by.ref)
        if not value:
            continue
        for pattern, chosen in by.values:
            if pattern.matches(value):
                return chosen
    return profile.versions


# ------------------------------------------------------------------- export


@lru_cache(maxsize=4096)  # pure, and a cluster has few exports: each read asks again
def normalise_path(path: str | None) -> str | None:
    """An export path as the server would read it: no duplicate or trailing slashes."""
    if not path:
        return path
    norm = posixpath.normpath(path)
    # POSIX normpath keeps a leading "//"; an NFS server reads it as "/".
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def _join(share: str | None, subdir: str | None) -> str | None:
    if share is None:
        return None
    if not subdir:
        return normalise_path(share)
    return normalise_path(share.rstrip("/") + "/" + subdir.lstrip("/"))
