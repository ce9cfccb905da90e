"""A pin as JSON Patch operations, and the check that the node will mount exactly it.

``pin_plan`` rewrites each option place with webhook/nfs/options.py (strip every
version option, write one ``nfsvers=<pin>`` where the node reads) and turns each
change into an operation through the pointer the place was read from;
``check_pin`` reads the places as the patch leaves them through the driver
profile. The patch is never applied here: the tests apply every one with
jsonpatch and read the result again (docs/performance.md, "the safety net").
"""

from __future__ import annotations

from typing import Any, NamedTuple

from webhook.api.kube import Operation
from webhook.api.patch import PatchOperation
from webhook.api.target import NFSTarget, OptionPlace
from webhook.nfs.options import (
    EffectiveVersion,
    effective_version,
    is_version_option,
    pin_entries,
    pin_option,
    selected_version,
    strip_entries,
)


class PinRefused(Exception):
    """A pin cannot be written (e.g. an immutable field on UPDATE)."""


class PinIncomplete(Exception):
    """A pin would write a lone option where the driver needs a complete set (the
    place replaces the driver's defaults, and the profile does not know them)."""


class PinPlan(NamedTuple):
    """How a pin is written, and what the object's option places hold once it is."""

    ops: list[PatchOperation]  # JSON Patch operations against the object as given
    places: tuple[OptionPlace, ...]  # every option place, as the patch leaves it


def pin_plan(target: NFSTarget, pin: str, operation: Operation) -> PinPlan:
    """JSON Patch operations that leave exactly one ``nfsvers=<pin>`` where the node
    reads it and no version option anywhere else, and the places they leave behind.

    The operations apply to the object ``target`` was read from, by construction: each
    place's pointer was read from that object, so ``replace``/``remove`` name fields
    that are present and ``add`` fields that are absent (after adding a missing parent
    map). The test suites apply every patch with jsonpatch and read the result again
    to hold the engine to that. Raises PinRefused (an immutable field on UPDATE) and
    PinIncomplete (defaults the profile does not know)."""
    ops: list[PatchOperation] = []
    after: list[OptionPlace] = []
    for place in target.places:
        if place.label == target.pin_place:
            base = list(place.entries)
            if place.replaces_defaults and not place.options:
                # Options written here replace the driver's defaults: write them all.
                if target.defaults is None:
                    raise PinIncomplete(
                        f"{place.label} replaces the {target.driver} driver's own mount "
                        f"options, so a lone {pin_option(pin)} there would drop them"
                    )
                base = list(target.defaults) if place.is_list else [",".join(target.defaults)]
            new = pin_entries(base, pin)
        elif any(is_version_option(o) for o in place.options):
            new = strip_entries(list(place.entries))
        else:
            after.append(place)
            continue
        if list(place.entries) == new and place.present:
            after.append(place)
            continue
        if not place.mutable and operation != "CREATE":
            held = ",".join(o for o in place.options if is_version_option(o))
            raise PinRefused(
                f"{place.label} {'holds ' + held if held else 'must be written'}"
                " and cannot change after creation"
            )
        if not place.present and place.container and new:
            ops.append({"op": "add", "path": place.container, "value": {}})
        op, written = _write(place, new)
        ops.append(op)
        after.append(written)
    return PinPlan(ops, tuple(after))


def _write(place: OptionPlace, new: list[str]) -> tuple[PatchOperation, OptionPlace]:
    """The operation that makes ``place`` hold ``new`` (removed when empty), and the
    place as it then reads: one function, so the patch and the check agree."""
    value: Any = new if place.is_list else ",".join(new)
    written = OptionPlace(
        label=place.label,
        pointer=place.pointer,
        is_list=place.is_list,
        entries=(tuple(new) if place.is_list else (value,)) if new else (),
        present=bool(new),
        node_reads=place.node_reads,
        mutable=place.mutable,
        replaces_defaults=place.replaces_defaults,
        container=place.container,
    )
    if not new:
        return {"op": "remove", "path": place.pointer}, written
    if not place.present:
        return {"op": "add", "path": place.pointer, "value": value}, written
    return {"op": "replace", "path": place.pointer, "value": value}, written


def check_pin(target: NFSTarget, plan: PinPlan, pin: str) -> tuple[EffectiveVersion, str | None]:
    """The version the node would mount once ``plan`` is applied, read through the
    driver profile (defaults, what it appends, the helper's default version), and why
    that is not exactly ``pin`` (None when it is): a driver that appends its own
    version option, or a profile that misses a place, must never be patched."""
    mount_options = target.node_options(plan.places)
    after = effective_version(mount_options)
    mounted = [o for o in mount_options if selected_version(o) is not None]
    if len(mounted) == 1 and after.version == pin:
        return after, None
    return after, (
        f"the node would mount with {','.join(mounted) or 'no version option'} "
        f"({after.describe()}), not exactly {pin_option(pin)}"
    )
