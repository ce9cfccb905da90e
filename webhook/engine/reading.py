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

Which fields those are for each driver is data: ``webhook.api.profile``
profiles (in-tree NFS, csi-driver-nfs and the subdir provisioner among them).
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from webhook.api.kube import (
    CSI_DRIVER_NFS,
    JSON_OBJECT,
    LEGACY_ANNOTATION,
    PROVISIONED_BY,
    SUBDIR_PROVISIONER_SUFFIX,
)
from webhook.api.profile import (
    ALL_VERSIONS,
    DriverProfile,
    FieldRef,
    KindRules,
    ObjectMatch,
    PinMode,
    PlaceSpec,
    ValueSource,
)
from webhook.config.profiles import builtin_profiles
from webhook.engine.profiles import DriverProfiles, ObjectView, server_versions
from webhook.nfs.options import (
    EffectiveVersion,
    effective_version,
    pin_option,
    selected_version,
    split_options,
)
from webhook.nfs.scope import NodeScope, scope_of


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
    replaces_defaults: bool = False  # options here replace the driver's defaults entirely
    container: str = ""  # pointer of a missing map to create before adding this field

    #: ``entries`` split into single options: asked several times per review, so split
    #: once (in ``__post_init__``; a cached_property would take a lock on Python 3.11).
    options: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(split_options(self.entries)))


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
    pin_place: str  # label of the place a pin is written to ("" when there is none)
    scope: NodeScope
    # From the driver profile (webhook.config.profiles); the defaults fit in-tree NFS.
    versions: frozenset[str] = ALL_VERSIONS  # versions this object's server speaks
    defaults: tuple[str, ...] | None = ()  # used when no replaces_defaults place has any
    appends: tuple[str, ...] = ()  # options the driver always appends
    default_version: str | None = None  # chosen by the mount helper when none is named
    pin_mode: PinMode = PinMode.WRITE
    pin_advice: str = ""

    def uses_defaults(self, places: Sequence[OptionPlace] | None = None) -> bool:
        """Whether the node mounts with the driver's defaults (no replacing place has any)."""
        replacing = [
            p
            for p in (self.places if places is None else places)
            if p.node_reads and p.replaces_defaults
        ]
        return bool(replacing) and not any(p.options for p in replacing)

    def node_options(self, places: Sequence[OptionPlace] | None = None) -> list[str]:
        """The options the node will mount with, in the order it reads them: the
        driver's defaults when nothing replaces them, every place the node reads,
        what the driver appends, and the mount helper's default version.

        ``places`` (default: the object's own) asks the same for the same object with
        other option places, e.g. as a patch leaves them (``engine.pin_plan``)."""
        places = self.places if places is None else places
        out: list[str] = []
        if self.defaults and self.uses_defaults(places):
            out.extend(split_options(self.defaults))
        out.extend(opt for place in places if place.node_reads for opt in place.options)
        out.extend(split_options(self.appends))
        if self.default_version and not any(selected_version(o) is not None for o in out):
            out.append(pin_option(self.default_version))
        return out

    def can_take(self, pin: str) -> str | None:
        """None when ``pin`` can be written safely, else why not (one sentence)."""
        if self.pin_mode is PinMode.NEVER:
            return (
                f"driver {self.driver} sets the NFS version itself and any version "
                "option breaks its mounts"
            )
        if not self.pin_place:
            return f"driver {self.driver} has no mount option place nfsguard can write"
        if pin not in self.versions:
            spoken = ", ".join(sorted(self.versions)) or "none"
            return f"servers of driver {self.driver} speak only NFS {spoken}, not {pin}"
        return None

    def effective_version(self) -> EffectiveVersion:
        return effective_version(self.node_options())

    def place(self, label: str) -> OptionPlace:
        return next(p for p in self.places if p.label == label)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, JSON_OBJECT):
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
    if not isinstance(value, list):
        raise InvalidObject(f"{where} must be a list of strings")
    for item in value:  # a loop, not all(generator): cheaper for the usual few options
        if not isinstance(item, str):
            raise InvalidObject(f"{where} must be a list of strings")
    return tuple(value)


def _string_map(value: Any, where: str) -> Mapping[str, str]:
    mapping = _mapping(value, where)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise InvalidObject(f"{where}.{key} must be a string")
    return mapping


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


def _lenient_map(value: Any) -> Mapping[str, str]:
    """String entries only: enough to identify a driver without judging its object."""
    if not isinstance(value, JSON_OBJECT):
        return {}
    # Usually every entry is a string: then the map itself, no copy (and _read knows
    # the strict check cannot fail).
    for k, v in value.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return value


_LEGACY_POINTER = "/metadata/annotations/" + _escape(LEGACY_ANNOTATION)


def _pointer(ref: FieldRef, key: str, kind: str) -> str:
    if ref.text == "annotation":
        return _LEGACY_POINTER
    if ref.text == "spec.mountOptions":
        return "/spec/mountOptions"
    if ref.text == "mountOptions":
        return "/mountOptions"
    base = "/spec/csi/volumeAttributes/" if kind == "PersistentVolume" else "/parameters/"
    return base + _escape(key)


def _container(ref: FieldRef, obj: Mapping[str, Any], kind: str) -> str:
    """The pointer of the map that holds ``ref`` when that map is missing."""
    if ref.key is None:
        return ""
    if kind == "PersistentVolume":
        spec = obj.get("spec")
        csi = spec.get("csi") if isinstance(spec, JSON_OBJECT) else None
        has = isinstance(csi, JSON_OBJECT) and isinstance(csi.get("volumeAttributes"), JSON_OBJECT)
        return "" if has else "/spec/csi/volumeAttributes"
    return "" if isinstance(obj.get("parameters"), JSON_OBJECT) else "/parameters"


@lru_cache(maxsize=256, typed=True)  # typed: a place keeps the very values given (1 is not True)
def _absent_place(
    label: str,
    pointer: str,
    is_list: bool,
    node_reads: bool,
    mutable: bool,
    replaces_defaults: bool,
    container: str,
) -> OptionPlace:
    """A place the object does not have. It depends on the profile alone (``container``
    is one of three pointers), so one immutable instance serves every object: building
    a frozen dataclass costs several times this lookup."""
    return OptionPlace(
        label=label,
        pointer=pointer,
        is_list=is_list,
        entries=(),
        present=False,
        node_reads=node_reads,
        mutable=mutable,
        replaces_defaults=replaces_defaults,
        container=container,
    )


def _places(rules: KindRules, view: ObjectView, kind: str) -> tuple[list[OptionPlace], str | None]:
    places: list[OptionPlace] = []
    pin_place: str | None = None
    for spec in rules.places:
        found = list(map(view.lookup, spec.fields))
        # The node reads the first field present (firstOf); when none is, the last.
        chosen = len(found) - 1
        for i, hit in enumerate(found):
            if hit is not None:
                chosen = i
                break
        for i, ref in enumerate(spec.fields):  # not zip(): this loop is hot and zip costs
            hit = found[i]
            reads = spec.reads and i == chosen
            is_pin = pin_place is None and reads
            immutable = spec.immutable if spec.immutable is not None else ref.immutable
            if hit is None:
                if not (ref.is_list or ref.text == "annotation" or is_pin):
                    continue
                place = _absent_place(
                    ref.text,
                    _pointer(ref, ref.key or ref.text, kind),
                    ref.is_list,
                    reads,
                    not immutable,
                    spec.replaces_defaults,
                    _container(ref, view.obj, kind),
                )
            else:
                entries: tuple[str, ...]
                if ref.is_list:
                    entries = _string_list(hit[1], ref.text)
                else:
                    text = _string(hit[1], ref.text)
                    entries = (text,) if text is not None else ()
                place = OptionPlace(
                    label=ref.text,
                    pointer=_pointer(ref, hit[0], kind),
                    is_list=ref.is_list,
                    entries=entries,
                    present=True,
                    node_reads=reads,
                    mutable=not immutable,
                    replaces_defaults=spec.replaces_defaults,
                    container="",
                )
            places.append(place)
            if is_pin:
                pin_place = ref.text
            if hit is not None and ref.key is not None and reads:
                places.extend(_case_variants(place, ref, hit[0], view, kind))
    return places, pin_place


def _case_variants(
    first: OptionPlace, ref: FieldRef, key: str, view: ObjectView, kind: str
) -> list[OptionPlace]:
    """The same attribute under other spellings of its key: csi-driver-nfs appends the
    value of EVERY key that matches case-insensitively (``mountOptions`` and
    ``MountOptions`` both reach the mount), so each is a place of its own."""
    assert ref.key is not None
    out = []
    for other, value in view.attributes.items():
        if other != key and other.lower() == ref.key.lower():
            prefix = ref.text[: len(ref.text) - len(ref.key)]
            out.append(
                dataclasses.replace(
                    first,
                    label=prefix + other,
                    pointer=_pointer(ref, other, kind),
                    entries=(value,),
                )
            )
    return out


def _read(
    kind: str,
    obj: Mapping[str, Any],
    extra: Container[str],
    profiles: DriverProfiles,
) -> NFSTarget | None:
    name, labels, annotations = _metadata(obj)
    in_tree = False
    if kind == "PersistentVolume":
        spec = _mapping(obj.get("spec"), "spec")
        _string_list(spec.get("mountOptions"), "spec.mountOptions")
        storage_class = _string(spec.get("storageClassName"), "spec.storageClassName")
        nfs, csi = spec.get("nfs"), spec.get("csi")
        if nfs is not None:
            nfs_source = _mapping(nfs, "spec.nfs")
            _string(nfs_source.get("server"), "spec.nfs.server")
            _string(nfs_source.get("path"), "spec.nfs.path")
            provisioner = annotations.get(PROVISIONED_BY)
            raw_attrs: Any = {}
            in_tree = True
        elif csi is not None:
            csi_source = _mapping(csi, "spec.csi")
            provisioner = _string(csi_source.get("driver"), "spec.csi.driver")
            if provisioner is None:
                return None
            raw_attrs = csi_source.get("volumeAttributes")
        else:
            return None
        where = "spec.csi.volumeAttributes"
    else:
        provisioner = _string(obj.get("provisioner"), "provisioner")
        if provisioner is None:
            return None
        storage_class = name
        raw_attrs = obj.get("parameters")
        where = "parameters"
    lenient = _lenient_map(raw_attrs)
    view = ObjectView(kind, obj, annotations, lenient)
    profile: DriverProfile | None = profiles.find(view)
    rules: KindRules | None
    if profile is not None:
        rules = profile.rules_for(kind)
        driver = profile.name
    elif (
        in_tree
        or provisioner is None
        or provisioner not in extra
        or profiles.claimed(kind, provisioner)
    ):
        return None
    else:
        rules = GENERIC_PV if kind == "PersistentVolume" else GENERIC_SC
        driver = provisioner
    assert rules is not None
    # In scope: now the object must be shaped as the API sends it.
    if lenient is not raw_attrs:  # else every entry is a string already: the view stands
        view = ObjectView(kind, obj, annotations, _string_map(raw_attrs, where))
    if kind == "StorageClass":
        _string_list(obj.get("mountOptions"), "mountOptions")
    server = view.resolve(rules.server)
    share = view.resolve(rules.path)
    path = _join(share, view.resolve(rules.subdir))
    places, pin_place = _places(rules, view, kind)
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
        versions=server_versions(profile, view) if profile is not None else ALL_VERSIONS,
        defaults=profile.defaults if profile is not None else (),
        appends=profile.appends if profile is not None else (),
        default_version=profile.default_version if profile is not None else None,
        pin_mode=profile.pin if profile is not None else PinMode.WRITE,
        pin_advice=profile.pin_advice if profile is not None else "",
    )


def read_target(
    obj: Mapping[str, Any],
    extra_provisioners: Container[str] = frozenset(),
    profiles: DriverProfiles | None = None,
) -> NFSTarget | None:
    """The NFS target of a PV or StorageClass, or None when the object is out of scope.

    An object is in scope when a driver profile reads it (``profiles``, default the
    built-ins), or when it is a CSI PV / StorageClass of a driver no profile knows
    that is named in ``extra_provisioners`` (the provisioners/CSI drivers named in
    loaded rules). A driver a profile names exactly, whose match the object fails,
    is not NFS (e.g. an Azure Files SMB share) and stays out of scope.
    """
    if not isinstance(obj, JSON_OBJECT):
        raise InvalidObject("object must be a JSON object")
    kind = obj.get("kind")
    if kind not in ("PersistentVolume", "StorageClass"):
        return None
    return _read(
        kind, obj, extra_provisioners, profiles if profiles is not None else builtin_profiles()
    )
