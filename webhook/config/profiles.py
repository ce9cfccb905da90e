"""``NFSDriverProfile`` documents -> ``DriverProfile`` objects, or every problem.

Profiles come from two places:
- built-in: webhook/data/drivers.yaml (the same documents as policies/drivers/),
  always in force; read by webhook.files.packaged, built here (``builtin_profiles_of``);
- operator: ``NFSDriverProfile`` documents in any policy file given with
  ``--policy`` (read in the same pass as the policies, webhook.config.load). An
  operator profile with the name of a built-in replaces it (``in_force``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import jsonschema

from webhook.api.policy import Position
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
    VersionsBy,
)
from webhook.config.documents import Document, Path, PolicyError, Problem, parse_documents
from webhook.config.schema import Wording, schema_problems
from webhook.nfs.options import selected_version
from webhook.nfs.patterns import NamePattern

PROFILE_KIND = "NFSDriverProfile"
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


def _context(data: Any, path: Path) -> str:
    """'profile "name": ', as every other problem of a profile begins."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return f'profile "{name}": ' if isinstance(name, str) else ""


WORDING = Wording(context=_context)


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
        if spec.get("inlineVolumes") and (pv is None or not pv.match.csi_drivers):
            self.error(
                ("spec", "inlineVolumes"),
                "inline volumes are CSI volumes: needs persistentVolume.match.csiDrivers",
            )
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
            inline_volumes=bool(spec.get("inlineVolumes", False)),
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
    doc: Document, validator: jsonschema.Draft202012Validator, *, builtin: bool = False
) -> tuple[DriverProfile | None, list[Problem]]:
    """One ``NFSDriverProfile`` document -> a profile, or None and every problem."""
    _coerce_versions(doc.data)
    problems = schema_problems(doc, validator, WORDING)
    if problems:
        return None, problems
    builder = _Builder(doc)
    profile = builder.build(builtin)
    if builder.problems:
        return None, builder.problems
    return profile, []


def load_profiles(
    documents: Iterable[Document],
    validator: jsonschema.Draft202012Validator,
    *,
    builtin: bool = False,
) -> tuple[list[DriverProfile], list[Problem]]:
    """Every ``NFSDriverProfile`` among ``documents`` (others are skipped), and every
    problem (schema, fields, duplicate names)."""
    profiles: list[DriverProfile] = []
    problems: list[Problem] = []
    seen: dict[str, Position] = {}
    for doc in documents:
        if doc.kind() != PROFILE_KIND:
            continue
        profile, found = build_profile(doc, validator, builtin=builtin)
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


def builtin_profiles_of(
    text: str, source: str, validator: jsonschema.Draft202012Validator
) -> tuple[DriverProfile, ...]:
    """The profiles shipped with nfsguard, from the text of webhook/data/drivers.yaml.
    Raises PolicyError: a broken built-in is a packaging bug, to fail loudly at start-up."""
    profiles, problems = load_profiles(parse_documents(text, source), validator, builtin=True)
    if problems:
        raise PolicyError(problems)
    return tuple(profiles)


def in_force(
    operator: Sequence[DriverProfile], builtin: Iterable[DriverProfile]
) -> tuple[DriverProfile, ...]:
    """The profiles in the order they are tried: the operator's (load order), then the
    built-ins (file order) that no operator profile replaces by name."""
    names = {p.name for p in operator}
    return (*operator, *(p for p in builtin if p.name not in names))
