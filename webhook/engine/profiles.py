"""The driver profiles in force, in the order they are tried, and how one is found
for an object: operator profiles first (load order), then the built-ins (file
order); the first profile whose ``match`` holds reads the object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from webhook.api.kube import JSON_OBJECT, LEGACY_ANNOTATION, PROVISIONED_BY
from webhook.api.profile import (
    DriverProfile,
    FieldRef,
    ObjectMatch,
    ValueCondition,
    ValueSource,
)
from webhook.nfs.patterns import NamePattern

_TEMPLATE = re.compile(r"\{([^{}]+)\}")

# ----------------------------------------------------------- reading objects


class ObjectView:
    """Read access to one PV or StorageClass by ``FieldRef`` (keys case-insensitive)."""

    def __init__(
        self,
        kind: str,
        obj: Mapping[str, Any],
        annotations: Mapping[str, str],
        attributes: Mapping[str, str],
    ) -> None:
        self.kind = kind
        self.obj = obj
        self.annotations = annotations
        self.attributes = attributes  # PV volumeAttributes or SC parameters
        # Looked up once, not per field and per profile tried: the map holding the
        # named fields (PV spec, or the StorageClass itself), and whether a PV is in-tree.
        fields = obj.get("spec") if kind == "PersistentVolume" else obj
        self.fields: Mapping[str, Any] = fields if isinstance(fields, JSON_OBJECT) else {}
        self.in_tree = kind == "PersistentVolume" and self.fields.get("nfs") is not None

    def lookup(self, ref: FieldRef) -> tuple[str, Any] | None:
        """(actual key or field, value) when the field is present (not null)."""
        key = ref.key
        if key is not None:
            if not ref.valid_for(self.kind):
                return None
            wanted = key.lower()
            for k, v in self.attributes.items():
                if k.lower() == wanted:
                    return k, v
            return None
        spec = self.fields
        text = ref.text
        if text == "annotation":
            value = self.annotations.get(LEGACY_ANNOTATION)
        elif text in ("spec.mountOptions", "mountOptions"):
            value = spec.get("mountOptions")
        elif text.startswith("spec.nfs."):
            nfs = spec.get("nfs")
            value = nfs.get(text[len("spec.nfs.") :]) if isinstance(nfs, JSON_OBJECT) else None
        elif text == "spec.csi.volumeHandle":
            csi = spec.get("csi")
            value = csi.get("volumeHandle") if isinstance(csi, JSON_OBJECT) else None
        else:
            value = None
        return None if value is None else (text, value)

    def driver_name(self) -> str | None:
        """PV: spec.csi.driver; StorageClass: provisioner."""
        if self.kind == "PersistentVolume":
            spec = self.obj.get("spec")
            csi = spec.get("csi") if isinstance(spec, JSON_OBJECT) else None
            driver = csi.get("driver") if isinstance(csi, JSON_OBJECT) else None
        else:
            driver = self.obj.get("provisioner")
        return driver if isinstance(driver, str) else None

    def string(self, ref: FieldRef) -> str | None:
        found = self.lookup(ref)
        return found[1] if found is not None and isinstance(found[1], str) else None

    def resolve(self, sources: Sequence[ValueSource]) -> str | None:
        """The first source that gives a non-empty value."""
        for source in sources:
            value: str | None
            if source.template is not None:
                value = self._template(source.template)
            elif source.ref is not None:
                value = self.string(source.ref)
                if value is not None and source.regex is not None:
                    m = source.regex.search(value)
                    value = (m.group(1) if m.groups() else m.group(0)) if m else None
            else:
                value = None
            if value:
                return value
        return None

    def _template(self, template: str) -> str | None:
        missing = False

        def fill(m: re.Match[str]) -> str:
            nonlocal missing
            value = self.string(FieldRef(m.group(1)))
            if not value:
                missing = True
                return ""
            return value

        out = _TEMPLATE.sub(fill, template)
        return None if missing else out


def _condition_holds(cond: ValueCondition, attributes: Mapping[str, str]) -> bool:
    for k, v in attributes.items():
        if k.lower() == cond.key:
            return not cond.values or any(p.matches(v) for p in cond.values)
    return False


def matches(profile: DriverProfile, view: ObjectView) -> bool:
    """Whether ``profile`` reads this object."""
    rules = profile.rules_for(view.kind)
    return rules is not None and _object_matches(rules.match, view)


def _any_matches(patterns: Sequence[NamePattern], name: str | None) -> bool:
    # A loop, not any(generator): this runs for every profile tried on every object.
    for pattern in patterns:  # noqa: SIM110
        if pattern.matches(name):
            return True
    return False


def _object_matches(m: ObjectMatch, view: ObjectView) -> bool:
    if view.kind == "PersistentVolume":
        spec = view.fields
        if view.in_tree:
            if not m.in_tree:
                return False
            if m.provisioned_by and not _any_matches(
                m.provisioned_by, view.annotations.get(PROVISIONED_BY)
            ):
                return False
        else:
            csi = spec.get("csi")
            if not isinstance(csi, JSON_OBJECT) or not m.csi_drivers:
                return False
            driver = csi.get("driver")
            if not isinstance(driver, str) or not _any_matches(m.csi_drivers, driver):
                return False
        if m.access_modes:
            modes = spec.get("accessModes")
            if not isinstance(modes, list) or not any(a in modes for a in m.access_modes):
                return False
    else:
        provisioner = view.obj.get("provisioner")
        if not isinstance(provisioner, str) or not _any_matches(m.provisioners, provisioner):
            return False
    return not m.conditions or all(_condition_holds(c, view.attributes) for c in m.conditions)


def claims(profile: DriverProfile, kind: str, driver: str) -> bool:
    """Whether the profile names ``driver`` exactly (not by a glob): then an object of
    that driver the profile does not match is not an NFS volume (e.g. Azure SMB)."""
    rules = profile.rules_for(kind)
    if rules is None:
        return False
    names = rules.match.csi_drivers if kind == "PersistentVolume" else rules.match.provisioners
    return any(p.glob is None and p.text == driver for p in names)


def server_versions(profile: DriverProfile, view: ObjectView) -> frozenset[str]:
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


# ------------------------------------------------------------------ profiles


_Candidate = tuple[DriverProfile, ObjectMatch]


class DriverProfiles:
    """Profiles in the order they are tried: operator profiles, then the built-ins."""

    def __init__(self, profiles: Iterable[DriverProfile]) -> None:
        self.profiles = tuple(profiles)
        # Candidates per object shape, so an object costs only the profiles that
        # could read it: (kind, exact driver name) and the glob/in-tree rest, in order.
        exact: dict[tuple[str, str], list[int]] = {}
        rest: dict[str, list[int]] = {"PersistentVolume": [], "StorageClass": []}
        for i, profile in enumerate(self.profiles):
            for kind in ("PersistentVolume", "StorageClass"):
                rules = profile.rules_for(kind)
                if rules is None:
                    continue
                m = rules.match
                names = m.csi_drivers if kind == "PersistentVolume" else m.provisioners
                if m.in_tree or any(n.glob is not None for n in names):
                    rest[kind].append(i)
                for n in names:
                    if n.glob is None:
                        exact.setdefault((kind, n.text), []).append(i)

        # (profile, its match) pairs, so find does no sorting or rules_for per object.
        def candidates(indexes: Iterable[int], kind: str) -> tuple[_Candidate, ...]:
            out: list[_Candidate] = []
            for i in sorted(set(indexes)):
                rules = self.profiles[i].rules_for(kind)
                assert rules is not None
                out.append((self.profiles[i], rules.match))
            return tuple(out)

        self._rest = {kind: candidates(rest[kind], kind) for kind in rest}
        self._exact = {
            (kind, name): candidates([*found, *rest[kind]], kind)
            for (kind, name), found in exact.items()
        }
        # matches: a PV with spec.nfs can be read only by an inTree profile.
        self._in_tree = tuple(c for c in self._rest["PersistentVolume"] if c[1].in_tree)

    def __iter__(self) -> Iterator[DriverProfile]:
        return iter(self.profiles)

    def __len__(self) -> int:
        return len(self.profiles)

    def get(self, name: str) -> DriverProfile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def find(self, view: ObjectView) -> DriverProfile | None:
        """The first profile (in order) that reads the object."""
        if view.in_tree:
            found = self._in_tree
        else:
            name = view.driver_name()
            rest = self._rest[view.kind]
            found = self._exact.get((view.kind, name), rest) if name is not None else rest
        for profile, match in found:
            if _object_matches(match, view):
                return profile
        return None

    def claimed(self, kind: str, driver: str) -> DriverProfile | None:
        return next((p for p in self.profiles if claims(p, kind, driver)), None)

    def with_operator(self, operator: Sequence[DriverProfile]) -> DriverProfiles:
        names = {p.name for p in operator}
        return DriverProfiles([*operator, *(p for p in self.profiles if p.name not in names)])
