"""NFS driver profiles as data: how each driver keeps its export and its mount options.

An ``NFSDriverProfile`` document (apiVersion ``nfsguard.io/v1alpha1``, schema in
webhook/data/nfsdriverprofile.schema.json, guide in docs/drivers.md) says, for
one driver: how its PersistentVolumes and StorageClasses are recognised, where
the export is recorded, every place the node reads mount options from (and in
which order), whether a written option set replaces the driver's defaults,
which options the driver appends itself, and which NFS versions its servers
speak. ``webhook.core.targets`` reads every object through these profiles.

Profiles come from two places:
- built-in: webhook/data/drivers.yaml (the same documents as policies/drivers/),
  always loaded;
- operator: ``NFSDriverProfile`` documents in any policy file given with
  ``--policy`` (the policy loader reads them in the same pass;
  ``load_policy_set`` returns them with the policies). An operator profile with
  the name of a built-in replaces it.
Operator profiles are tried first (load order), then the built-ins (file order);
the first profile whose ``match`` holds reads the object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, cached_property
from importlib import resources
from typing import Any

from webhook.core.decision import Action
from webhook.core.jsontypes import JSON_OBJECT
from webhook.core.options import PINNABLE_VERSIONS, pin_option, selected_version
from webhook.core.policy.loader import API_VERSION as API_VERSION
from webhook.core.policy.loader import PROFILE_KIND as PROFILE_KIND
from webhook.core.policy.loader import (
    Document,
    PolicyError,
    Problem,
    check_sources,
    parse_documents,
)
from webhook.core.policy.model import Policy, Position, Rule
from webhook.core.policy.patterns import NamePattern
from webhook.core.schemas import dotted, load_schema, validator

LEGACY_ANNOTATION = "volume.beta.kubernetes.io/mount-options"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
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

    def describe_versions(self) -> str:
        if self.pin is PinMode.NEVER:
            return "never pinned: the driver sets the version itself"
        text = ", ".join(sorted(self.versions))
        if self.versions_by:
            text += " (per object: " + ", ".join(by.ref.text for by in self.versions_by) + ")"
        return text


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


def profile_schema() -> dict[str, Any]:
    return load_schema("nfsdriverprofile")


def _names(items: Any, where: Sequence[str | int], doc: Document, problems: list[Problem]) -> Any:
    out: list[NamePattern] = []
    for i, text in enumerate(items or ()):
        try:
            out.append(NamePattern.parse(text))
        except ValueError as exc:
            problems.append(Problem(doc.at((*where, i)), str(exc)))
    return tuple(out)


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.name = doc.data.get("metadata", {}).get("name", "?")

    def error(self, path: Sequence[str | int], message: str) -> None:
        self.problems.append(Problem(self.doc.at(tuple(path)), f'profile "{self.name}": {message}'))

    def ref(self, text: str, kind: str, path: Sequence[str | int]) -> FieldRef:
        ref = FieldRef(text)
        if not ref.valid_for(kind):
            self.error(path, f"{text!r} is not a field of a {kind}")
        return ref

    def sources(self, raw: Any, kind: str, path: Sequence[str | int]) -> tuple[ValueSource, ...]:
        out: list[ValueSource] = []
        for i, item in enumerate(raw or ()):
            where = (*path, i)
            if isinstance(item, str):
                if "{" in item:
                    for ref in _TEMPLATE.findall(item):
                        self.ref(ref, kind, where)
                    out.append(ValueSource(template=item))
                else:
                    out.append(ValueSource(ref=self.ref(item, kind, where)))
                continue
            regex = None
            if "regex" in item:
                try:
                    regex = re.compile(item["regex"])
                except re.error as exc:
                    self.error((*where, "regex"), f"invalid regex: {exc}")
            out.append(ValueSource(ref=self.ref(item["from"], kind, (*where, "from")), regex=regex))
        return tuple(out)

    def places(self, raw: Any, kind: str, path: Sequence[str | int]) -> tuple[PlaceSpec, ...]:
        out: list[PlaceSpec] = []
        for i, item in enumerate(raw or ()):
            where = (*path, i)
            if isinstance(item, str):
                item = {"field": item}
            if "firstOf" in item:
                fields = tuple(
                    self.ref(t, kind, (*where, "firstOf", j)) for j, t in enumerate(item["firstOf"])
                )
            else:
                fields = (self.ref(item["field"], kind, (*where, "field")),)
            for f in fields:
                if f.text in ("spec.nfs.server", "spec.nfs.path", "spec.csi.volumeHandle"):
                    self.error(where, f"{f.text} cannot hold mount options")
            out.append(
                PlaceSpec(
                    fields,
                    reads=item.get("nodeReads", True),
                    replaces_defaults=item.get("replacesDefaults", False),
                    immutable=item.get("immutable"),
                )
            )
        return tuple(out)

    def kind_rules(self, raw: Any, kind: str, path: tuple[str, ...]) -> KindRules | None:
        if raw is None:
            return None
        m = raw.get("match") or {}
        mp = (*path, "match")
        conds_key = "volumeAttributes" if kind == "PersistentVolume" else "parameters"
        conditions = []
        for key, values in (m.get(conds_key) or {}).items():
            vals = [values] if isinstance(values, str) else list(values or [])
            conditions.append(
                ValueCondition(
                    key.lower(), _names(vals, (*mp, conds_key, key), self.doc, self.problems)
                )
            )
        match = ObjectMatch(
            csi_drivers=_names(m.get("csiDrivers"), (*mp, "csiDrivers"), self.doc, self.problems),
            in_tree=bool(m.get("inTree", False)),
            provisioned_by=_names(
                m.get("provisionedBy"), (*mp, "provisionedBy"), self.doc, self.problems
            ),
            provisioners=_names(
                m.get("provisioners"), (*mp, "provisioners"), self.doc, self.problems
            ),
            conditions=tuple(conditions),
            access_modes=tuple(m.get("accessModes") or ()),
        )
        if kind == "PersistentVolume" and not (match.in_tree or match.csi_drivers):
            self.error(mp, "match needs csiDrivers or inTree: true")
        if kind == "StorageClass" and not match.provisioners:
            self.error(mp, "match needs provisioners")
        export = raw.get("export") or {}
        ep = (*path, "export")
        return KindRules(
            match=match,
            server=self.sources(export.get("server"), kind, (*ep, "server")),
            path=self.sources(export.get("path"), kind, (*ep, "path")),
            subdir=self.sources(export.get("subdir"), kind, (*ep, "subdir")),
            places=self.places(raw.get("mountOptions"), kind, (*path, "mountOptions")),
        )

    def build(self, builtin: bool) -> DriverProfile:
        spec = self.doc.data["spec"]
        pv = self.kind_rules(
            spec.get("persistentVolume"), "PersistentVolume", ("spec", "persistentVolume")
        )
        sc = self.kind_rules(spec.get("storageClass"), "StorageClass", ("spec", "storageClass"))
        if pv is None and sc is None:
            self.error(("spec",), "needs persistentVolume or storageClass")
        versions_by = []
        for i, raw in enumerate(spec.get("versionsBy") or ()):
            where = ("spec", "versionsBy", i)
            kinds = [
                k
                for k in ("PersistentVolume", "StorageClass")
                if FieldRef(raw["field"]).valid_for(k)
            ]
            if not kinds:
                self.error(
                    (*where, "field"), f"{raw['field']!r} is not a field of a PV or StorageClass"
                )
            values = []
            for k, vs in (raw.get("values") or {}).items():
                try:
                    values.append((NamePattern.parse(k), frozenset(str(v) for v in vs)))
                except ValueError as exc:
                    self.error((*where, "values", k), str(exc))
            versions_by.append(VersionsBy(FieldRef(raw["field"]), tuple(values)))
        defaults = spec.get("defaults")
        default_version = spec.get("defaultVersion")
        for opt in spec.get("appends") or ():
            if selected_version(opt) is not None and spec.get("pin", "write") == "write":
                self.error(
                    ("spec", "appends"),
                    f"the driver appends the version option {opt!r}: a pin would conflict "
                    "with it; set pin: never",
                )
        return DriverProfile(
            name=self.name,
            persistent_volume=pv,
            storage_class=sc,
            versions=frozenset(str(v) for v in spec.get("versions") or ALL_VERSIONS),
            versions_by=tuple(versions_by),
            defaults=tuple(defaults) if defaults is not None else None,
            appends=tuple(spec.get("appends") or ()),
            default_version=str(default_version) if default_version is not None else None,
            pin=PinMode(spec.get("pin", "write")),
            pin_advice=spec.get("pinAdvice", ""),
            description=spec.get("description", ""),
            references=tuple(spec.get("references") or ()),
            builtin=builtin,
            source=self.doc.source,
            position=self.doc.start,
        )


def _coerce_versions(data: Any) -> None:
    # `versions: [4.1]` unquoted is YAML's float; accept what can only mean one version.
    spec = data.get("spec") if isinstance(data, dict) else None
    if not isinstance(spec, dict):
        return

    def fix(v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {2: "2", 3: "3", 4.0: "4.0", 4.1: "4.1", 4.2: "4.2"}.get(v, v)
        return v

    if isinstance(spec.get("versions"), list):
        spec["versions"] = [fix(v) for v in spec["versions"]]
    if "defaultVersion" in spec:
        spec["defaultVersion"] = fix(spec["defaultVersion"])
    for by in spec.get("versionsBy") or ():
        if isinstance(by, dict) and isinstance(by.get("values"), dict):
            by["values"] = {
                k: [fix(v) for v in vs] if isinstance(vs, list) else vs
                for k, vs in by["values"].items()
            }


def build_profile(
    doc: Document, *, builtin: bool = False
) -> tuple[DriverProfile | None, list[Problem]]:
    """One ``NFSDriverProfile`` document -> a profile, or None and every problem."""
    _coerce_versions(doc.data)
    problems: list[Problem] = []
    for error in validator("nfsdriverprofile").iter_errors(doc.data):
        path = tuple(error.absolute_path)
        problems.append(Problem(doc.at(path), f"{dotted(path)}: {error.message}"))
    if problems:
        return None, problems
    builder = _Builder(doc)
    profile = builder.build(builtin)
    if builder.problems:
        return None, builder.problems
    return profile, []


def load_profiles(
    documents: Iterable[Document], *, builtin: bool = False
) -> tuple[list[DriverProfile], list[Problem]]:
    """Every ``NFSDriverProfile`` among ``documents`` (others are skipped), and every
    problem (schema, fields, duplicate names). For ``policy lint`` and the loaders."""
    profiles: list[DriverProfile] = []
    problems: list[Problem] = []
    seen: dict[str, Position] = {}
    for doc in documents:
        if doc.kind() != PROFILE_KIND:
            continue
        profile, found = build_profile(doc, builtin=builtin)
        problems.extend(found)
        if profile is None:
            continue
        where = doc.at(("metadata", "name"))
        if profile.name in seen:
            problems.append(
                Problem(
                    where,
                    f'duplicate driver profile name "{profile.name}" (first defined at '
                    f"{seen[profile.name]})",
                )
            )
            continue
        seen[profile.name] = where
        profiles.append(profile)
    return profiles, problems


def load_policy_set(sources: Iterable[tuple[str, str]]) -> tuple[list[Policy], DriverProfiles]:
    """The policies of ``sources`` (name, text) and the driver profiles in force with
    them (built-ins plus the operator's), each file parsed once: what ``Engine`` takes.
    Raises PolicyError with every error; warnings do not stop loading."""
    policies, operator, problems = check_sources(sources)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PolicyError(errors)
    return policies, builtin_profiles().with_operator(operator)


BUILTIN_SOURCE = "webhook/data/drivers.yaml"


def builtin_text() -> str:
    return resources.files("webhook").joinpath("data/drivers.yaml").read_text(encoding="utf-8")


@cache
def builtin_profiles() -> DriverProfiles:
    """The profiles shipped with nfsguard (webhook/data/drivers.yaml)."""
    profiles, problems = load_profiles(
        parse_documents(builtin_text(), BUILTIN_SOURCE), builtin=True
    )
    if problems:  # a packaging bug: fail loudly at start-up, never silently
        raise PolicyError(problems)
    return DriverProfiles(profiles)


# ---------------------------------------------------------------- lint help


def _rule_position(policy: Policy, rule: Rule) -> Position:
    return rule.position or policy.position or Position(policy.source or "?", 1)


def _names_overlap(pattern: NamePattern, names: Sequence[NamePattern]) -> bool:
    for name in names:
        if name.glob is None and pattern.matches(name.text):
            return True
        if pattern.glob is None and name.matches(pattern.text):
            return True
        if pattern.text == name.text:
            return True
    return False


def _covers(pattern: NamePattern, name: NamePattern) -> bool:
    """Whether every driver ``name`` stands for is matched by ``pattern``."""
    return pattern.text == name.text or (name.glob is None and pattern.matches(name.text))


def unsafe_pin_warnings(
    policies: Sequence[Policy], profiles: DriverProfiles | None = None
) -> list[Problem]:
    """A warning for every pin rule that can reach a driver whose servers cannot take
    its pin: a rule without an export filter, whose provisioners filter (if any)
    names such a driver, and whose exclude does not name it."""
    profiles = profiles if profiles is not None else builtin_profiles()
    # Drivers a loaded exempt rule takes out whole (a match on provisioners alone):
    # no pin rule ever decides for their objects (exempt wins over everything).
    exempt: list[NamePattern] = []
    for policy in policies:
        for rule in policy.rules:
            m = rule.match
            if (
                rule.action is Action.EXEMPT
                and m.provisioners
                and rule.exclude is None
                and m.exports is None
                and m.storage_class_names is None
                and m.node_kernels is None
                and m.object_selector is None
            ):
                exempt.extend(m.provisioners)
    problems: list[Problem] = []
    for policy in policies:
        if policy.pin not in PINNABLE_VERSIONS:
            continue
        for rule in policy.rules:
            if rule.action is not Action.PIN or rule.match.exports is not None:
                continue
            reach: list[str] = []
            for profile in profiles:
                if profile.can_pin(policy.pin):
                    continue
                names = profile.driver_names()
                if all(any(_covers(e, n) for e in exempt) for n in names):
                    continue
                if rule.match.provisioners is not None and not any(
                    _names_overlap(p, names) for p in rule.match.provisioners
                ):
                    continue
                excluded = rule.exclude is not None and rule.exclude.provisioners is not None
                if excluded and any(
                    _names_overlap(p, names)
                    for p in (rule.exclude.provisioners if rule.exclude else ()) or ()
                ):
                    continue
                speaks = ", ".join(sorted(profile.versions))
                reach.append(
                    f"{profile.name} ({'never pinned' if profile.pin is PinMode.NEVER else speaks})"
                )
            if not reach:
                continue
            how = getattr(rule, "on_unsupported_pin", "warn")
            verdict = "denied" if str(how) == "deny" else "allowed unchanged with a warning"
            problems.append(
                Problem(
                    _rule_position(policy, rule),
                    f'rule "{rule.name}": pins {pin_option(policy.pin)} with no export filter '
                    f"and can reach drivers that cannot take it: {', '.join(reach)}; "
                    f"their objects are {verdict} (onUnsupportedPin). Narrow it with "
                    "match.exports or match.provisioners, or exclude.provisioners",
                    severity="warning",
                )
            )
    return problems
