"""Where mount options live on one object, read through its driver profile.

Each ``PlaceSpec`` of the profile becomes ``OptionPlace``s: the fields present (and
the absent ones a pin may have to write), which one the node reads, the RFC 6901
pointer each was read from (so a patch names exactly that field), and whether it
may change on UPDATE. Rules implemented here (docs/nfs-semantics.md):

- kubelet's MountOptionFromSpec (pkg/volume/util/util.go) uses the legacy
  annotation ``volume.beta.kubernetes.io/mount-options`` INSTEAD of
  ``spec.mountOptions`` when a PV carries it (a ``firstOf`` place);
- csi-driver-nfs appends its ``mountOptions`` volume attribute, keys matched
  case-insensitively, so every spelling of the key is a place of its own;
- PV volume sources are immutable after creation, mountOptions and annotations
  are not.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from webhook.api.kube import JSON_OBJECT, LEGACY_ANNOTATION, ObjectKind
from webhook.api.profile import FieldRef, KindRules
from webhook.api.target import OptionPlace
from webhook.engine.view import ObjectView, string, string_list


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


_LEGACY_POINTER = "/metadata/annotations/" + _escape(LEGACY_ANNOTATION)


def _pointer(ref: FieldRef, key: str, kind: ObjectKind) -> str:
    if ref.text == "annotation":
        return _LEGACY_POINTER
    if ref.text == "spec.mountOptions":
        return "/spec/mountOptions"
    if ref.text == "mountOptions":
        return "/mountOptions"
    base = "/spec/csi/volumeAttributes/" if kind == "PersistentVolume" else "/parameters/"
    return base + _escape(key)


def _container(ref: FieldRef, view: ObjectView) -> str:
    """The pointer of the map that holds ``ref`` when that map is missing."""
    if ref.key is None:
        return ""
    if view.kind == "PersistentVolume":
        csi = view.fields.get("csi")
        has = isinstance(csi, JSON_OBJECT) and isinstance(csi.get("volumeAttributes"), JSON_OBJECT)
        return "" if has else "/spec/csi/volumeAttributes"
    return "" if isinstance(view.fields.get("parameters"), JSON_OBJECT) else "/parameters"


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


def option_places(rules: KindRules, view: ObjectView) -> tuple[list[OptionPlace], str | None]:
    """Every option place of the object, in the profile's order, and the label of the
    place a pin is written to (the first the node reads; None when there is none)."""
    kind = view.kind
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
                    _container(ref, view),
                )
            else:
                entries: tuple[str, ...]
                if ref.is_list:
                    entries = string_list(hit[1], ref.text)
                else:
                    text = string(hit[1], ref.text)
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
                places.extend(_case_variants(place, ref, hit[0], view))
    return places, pin_place


def _case_variants(
    first: OptionPlace, ref: FieldRef, key: str, view: ObjectView
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
                    pointer=_pointer(ref, other, view.kind),
                    entries=(value,),
                )
            )
    return out
