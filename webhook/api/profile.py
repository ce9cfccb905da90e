"""Driver profiles as frozen data: how each driver keeps its export and its mount options.

An ``NFSDriverProfile`` document (apiVersion ``nfsguard.io/v1alpha1``, schema in
webhook/data/nfsdriverprofile.schema.json, guide in docs/drivers.md) says, for
one driver: how its PersistentVolumes and StorageClasses are recognised, where
the export is recorded, every place the node reads mount options from (and in
which order), whether a written option set replaces the driver's defaults,
which options the driver appends itself, and which NFS versions its servers
speak. ``webhook.config.profiles`` builds these from documents;
``webhook.engine.reading`` reads every object through them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from webhook.api.policy import Position
from webhook.nfs.patterns import NamePattern

ALL_VERSIONS = frozenset({"2", "3", "4.0", "4.1", "4.2"})

_ATTR_PREFIX = "spec.csi.volumeAttributes."
_PARAM_PREFIX = "parameters."
_PV_FIELDS = frozenset(
    {"annotation", "spec.mountOptions", "spec.nfs.server", "spec.nfs.path", "spec.csi.volumeHandle"}
)
_SC_FIELDS = frozenset({"mountOptions"})
_LIST_FIELDS = frozenset({"spec.mountOptions", "mountOptions"})
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


class PinMode(StrEnum):
    WRITE = "write"  # strip every version option, write one nfsvers=<pin> where the node reads
    NEVER = "never"  # the driver sets the version itself: any version option breaks the mount


# --------------------------------------------------------------------- model


@dataclass(frozen=True)
class FieldRef:
    """A field of a PV or StorageClass, named as in the profile (and in OptionPlace labels).

    PV: ``annotation`` (the legacy mount-options annotation), ``spec.mountOptions``,
    ``spec.nfs.server``, ``spec.nfs.path``, ``spec.csi.volumeHandle``,
    ``spec.csi.volumeAttributes.<key>``. StorageClass: ``mountOptions``,
    ``parameters.<key>``. Attribute and parameter keys match case-insensitively.
    """

    text: str

    @cached_property
    def key(self) -> str | None:
        for prefix in (_ATTR_PREFIX, _PARAM_PREFIX):
            if self.text.startswith(prefix):
                return self.text[len(prefix) :]
        return None

    @cached_property
    def is_list(self) -> bool:
        return self.text in _LIST_FIELDS

    @cached_property
    def immutable(self) -> bool:
        """Kubernetes: a PV's volume source and a StorageClass's parameters never change."""
        return self.text.startswith((_ATTR_PREFIX, _PARAM_PREFIX, "spec.csi.", "spec.nfs."))

    def valid_for(self, kind: str) -> bool:
        # Cached per kind: ObjectView.lookup asks on every read of an attribute.
        return self._valid_pv if kind == "PersistentVolume" else self._valid_sc

    @cached_property
    def _valid_pv(self) -> bool:
        return self.text in _PV_FIELDS or (
            self.text.startswith(_ATTR_PREFIX) and len(self.text) > len(_ATTR_PREFIX)
        )

    @cached_property
    def _valid_sc(self) -> bool:
        return self.text in _SC_FIELDS or (
            self.text.startswith(_PARAM_PREFIX) and len(self.text) > len(_PARAM_PREFIX)
        )


@dataclass(frozen=True)
class ValueSource:
    """Where one export value comes from: a field, a template ``"{field}.suffix"``,
    or a field and a regex (group 1, or the whole match)."""

    ref: FieldRef | None = None
    template: str | None = None
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True)
class PlaceSpec:
    """One place mount options live. ``fields`` has one entry, or several for
    ``firstOf`` (the node reads the first one present, e.g. kubelet's legacy
    annotation INSTEAD of spec.mountOptions; the last is written when none is)."""

    fields: tuple[FieldRef, ...]
    reads: bool = True
    replaces_defaults: bool = False
    immutable: bool | None = None  # None: as Kubernetes says for the field


@dataclass(frozen=True)
class ValueCondition:
    key: str  # lower case
    values: tuple[NamePattern, ...]  # globs; empty: any value, the key must be present


@dataclass(frozen=True)
class ObjectMatch:
    csi_drivers: tuple[NamePattern, ...] = ()
    in_tree: bool = False
    provisioned_by: tuple[NamePattern, ...] = ()
    provisioners: tuple[NamePattern, ...] = ()
    conditions: tuple[ValueCondition, ...] = ()  # volumeAttributes (PV) / parameters (SC)
    access_modes: tuple[str, ...] = ()


@dataclass(frozen=True)
class KindRules:
    match: ObjectMatch
    server: tuple[ValueSource, ...] = ()
    path: tuple[ValueSource, ...] = ()
    subdir: tuple[ValueSource, ...] = ()
    places: tuple[PlaceSpec, ...] = ()


@dataclass(frozen=True)
class VersionsBy:
    """Per-object server versions: the value of ``ref`` (glob keys, first match) selects
    the set instead of the profile's ``versions``."""

    ref: FieldRef
    values: tuple[tuple[NamePattern, frozenset[str]], ...]


@dataclass(frozen=True)
class DriverProfile:
    name: str
    persistent_volume: KindRules | None = None
    storage_class: KindRules | None = None
    versions: frozenset[str] = ALL_VERSIONS
    versions_by: tuple[VersionsBy, ...] = ()
    defaults: tuple[str, ...] | None = None  # None: not known (when a place replaces them)
    appends: tuple[str, ...] = ()
    default_version: str | None = None
    pin: PinMode = PinMode.WRITE
    pin_advice: str = ""
    #: The driver's PV reading also reads its CSI inline (ephemeral) volumes in a pod
    #: spec (``volumes[].csi``: driver and volumeAttributes, no PV; csi-driver-nfs
    #: ``feature.enableInlineVolume``). Only volumeAttributes places exist there.
    inline_volumes: bool = False
    description: str = ""
    references: tuple[str, ...] = ()
    builtin: bool = False
    source: str = ""
    position: Position | None = None

    def rules_for(self, kind: str) -> KindRules | None:
        return self.persistent_volume if kind == "PersistentVolume" else self.storage_class

    def driver_names(self) -> tuple[NamePattern, ...]:
        """Every CSI driver / provisioner name pattern that identifies this driver."""
        out: list[NamePattern] = []
        for rules in (self.persistent_volume, self.storage_class):
            if rules is not None:
                m = rules.match
                out.extend(m.csi_drivers + m.provisioned_by + m.provisioners)
        return tuple(out)

    def can_pin(self, pin: str) -> bool:
        """Whether ``pin`` is safe for every object this profile can read."""
        if self.pin is PinMode.NEVER:
            return False
        sets = [self.versions, *(v for by in self.versions_by for _, v in by.values)]
        return all(pin in s for s in sets)
