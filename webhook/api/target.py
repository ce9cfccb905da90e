"""What nfsguard reads from one PersistentVolume or StorageClass, as frozen data.

An ``NFSTarget`` says which driver profile read the object, which export it
points at, every place mount options live on it (and which of them the node
reads), where a pin is written, and the node scope. webhook/engine/reading.py
builds it; matching, the verdict, the pin and ``policy explain`` read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from webhook.api.kube import ObjectKind
from webhook.api.profile import ALL_VERSIONS, PinMode
from webhook.nfs.options import (
    EffectiveVersion,
    effective_version,
    pin_option,
    selected_version,
    split_options,
)
from webhook.nfs.scope import NodeScope


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
    kind: ObjectKind
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
    # From the driver profile (webhook.api.profile); the defaults fit in-tree NFS.
    versions: frozenset[str] = ALL_VERSIONS  # versions this object's server speaks
    defaults: tuple[str, ...] | None = ()  # used when no replaces_defaults place has any
    appends: tuple[str, ...] = ()  # options the driver always appends
    default_version: str | None = None  # chosen by the mount helper when none is named
    pin_mode: PinMode = PinMode.WRITE
    pin_advice: str = ""
    #: A volume named inline in a pod spec (webhook/engine/pod_volumes.py): its name in
    #: ``spec.volumes``, and its source: ``nfs`` (no place for mount options at all:
    #: it can be refused or reported, never pinned) or ``csi``; "" for a PV or class.
    volume: str = ""
    inline: str = ""
    #: A pod volume's: the object's namespace ("" when the object names none) and the
    #: volume's ``readOnly`` (an inline ``nfs`` volume's, kept in the PV nfsguard suggests).
    namespace: str = ""
    read_only: bool = False

    @property
    def display_name(self) -> str:
        """How messages name it: ``name``, or ``name volume <volume>`` for a pod volume."""
        return f"{self.name} volume {self.volume}" if self.volume else self.name

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
        other option places, e.g. as a patch leaves them (webhook/engine/pin.py)."""
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
