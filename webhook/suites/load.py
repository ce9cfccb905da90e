"""Reading policy test suites (``kind: NFSPolicyTest``): finding the files, checking
each document against the suite schema, and building its cases with every file a
case names (objects, golden objects, node inventories) and an engine per policy set.

Every problem of every suite is collected as ``FILE:LINE: message`` before anything
runs, so one pass shows them all (``policy test`` refuses them with exit 2; ``policy
lint`` counts them as errors).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from webhook.admission.offline import object_label
from webhook.api.profile import DriverProfile
from webhook.config.documents import API_VERSION, Document, PolicyError, Problem
from webhook.config.documents import scan_documents as _scan
from webhook.config.load import load
from webhook.config.schema import Schemas, Wording, schema_problems
from webhook.engine.engine import Engine
from webhook.files.sources import POLICY_SUFFIXES, SourceError, load_manifests, read_text
from webhook.files.sources import read_policy_sources as _read_policies
from webhook.nfs.inventory import (
    Node,
    NodeInventory,
    StaticInventory,
    UnknownInventory,
    node_from_object,
    nodes_from_objects,
)
from webhook.suites.suite import SUITE_KIND, Case, Expect, SuiteError

_SUITE_MARK = re.compile(rf"^kind:\s*['\"]?{SUITE_KIND}['\"]?\s*(#.*)?$", re.MULTILINE)


def suite_files(paths: Sequence[str]) -> list[Path]:
    """Files named, and every ``*.yaml``/``*.yml`` under directories named (recursively)
    that holds a ``kind: NFSPolicyTest`` document. Raises SuiteError."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in POLICY_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            suites = [p for p in inside if _SUITE_MARK.search(_text(p))]
            if not suites:
                raise SuiteError([f"{raw}: no test suites (kind: {SUITE_KIND}) found"])
            found.extend(suites)
        elif path.is_file():
            found.append(path)
        else:
            raise SuiteError([f"{raw}: no such file or directory"])
    return found


def _text(path: Path) -> str:
    try:
        return read_text(path)
    except SourceError as exc:
        raise SuiteError([str(exc)]) from None


#: A suite's keys are few and fixed: an unknown one lists them all.
WORDING = Wording(list_allowed=True)


def _line(doc: Document, path: tuple[str | int, ...], *, key: bool = False) -> str:
    pos = doc.at(path, key=key)
    return f"{pos.file}:{pos.line}"


def _schema_lines(doc: Document, schemas: Schemas) -> list[str]:
    found = schema_problems(doc, schemas.suite, WORDING)
    found.sort(key=lambda p: (p.position.line, p.position.column))
    return [_problem_line(p) for p in found]


def _problem_line(problem: Problem) -> str:
    return f"{problem.position.file}:{problem.position.line}: {problem.message}"


class _Reader:
    """Builds cases from suite documents, collecting every problem as FILE:LINE: message."""

    def __init__(self, schemas: Schemas) -> None:
        self.schemas = schemas
        self.problems: list[str] = []
        self.suites_read = 0

    def problem(self, doc: Document, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(f"{_line(doc, path)}: {message}")

    def suites(self, files: Sequence[Path]) -> list[Case]:
        cases: list[Case] = []
        names: dict[str, str] = {}
        for file in files:
            text = _text(file)
            documents, syntax = _scan(text, str(file))
            self.problems += [_problem_line(p) for p in syntax]
            for doc in documents:
                self.problems += [_problem_line(p) for p in doc.problems]
                if not isinstance(doc.data, dict) or doc.kind() != SUITE_KIND:
                    kind = doc.kind()
                    self.problem(
                        doc,
                        ("kind",),
                        f"not a test suite: kind {kind!r} (expected {SUITE_KIND}, "
                        f"apiVersion {API_VERSION})",
                    )
                    continue
                self.suites_read += 1
                schema = _schema_lines(doc, self.schemas)
                if schema:
                    self.problems += schema
                    continue
                meta = doc.data.get("metadata") or {}
                suite = str(meta.get("name") or file.stem)
                if suite in names:
                    self.problem(
                        doc,
                        ("metadata", "name"),
                        f"duplicate suite name {suite!r} (first in {names[suite]})",
                    )
                    continue
                names[suite] = str(file)
                cases += self._suite(doc, file, suite)
        return cases

    def _suite(self, doc: Document, file: Path, suite: str) -> list[Case]:
        spec = doc.data["spec"]
        base = file.parent
        policies = []
        for i, rel in enumerate(spec["policies"]):
            target = Path(os.path.normpath(base / rel))
            if not target.exists():
                self.problem(doc, ("spec", "policies", i), f"policy {rel!r}: no such file")
            policies.append(str(target))
        suite_nodes = self._nodes(doc, ("spec", "nodes"), spec.get("nodes"), base)
        operation = spec.get("operation", "CREATE")
        cases: list[Case] = []
        seen: set[str] = set()
        for i, raw in enumerate(spec["cases"]):
            path: tuple[str | int, ...] = ("spec", "cases", i)
            name = raw["name"]
            if name in seen:
                self.problem(doc, (*path, "name"), f"duplicate case name {name!r}")
                continue
            seen.add(name)
            obj = self._object(doc, path, raw, base)
            old, old_ok = self._old(doc, path, raw, base)
            expect = self._expect(doc, (*path, "expect"), raw["expect"], base)
            inventory = (
                self._nodes(doc, (*path, "nodes"), raw["nodes"], base)
                if "nodes" in raw
                else suite_nodes
            )
            if obj is None or expect is None or inventory is None or not old_ok:
                continue
            cases.append(
                Case(
                    suite=suite,
                    name=name,
                    where=_line(doc, path),
                    obj=obj,
                    operation=raw.get("operation", "UPDATE" if old is not None else operation),
                    inventory=inventory,
                    policies=tuple(policies),
                    expect=expect,
                    old=old,
                )
            )
        return cases

    def _load(
        self, doc: Document, path: tuple[str | int, ...], rel: str, base: Path
    ) -> list[dict[str, Any]] | None:
        file = Path(os.path.normpath(base / rel))
        try:
            return list(load_manifests(read_text(file), str(file)))
        except SourceError as exc:
            self.problem(doc, path, str(exc))
            return None

    def _object(
        self, doc: Document, path: tuple[str | int, ...], raw: Mapping[str, Any], base: Path
    ) -> dict[str, Any] | None:
        if ("object" in raw) == ("objectFile" in raw):
            self.problem(doc, path, "a case needs exactly one of object, objectFile")
            return None
        if "object" in raw:
            obj: dict[str, Any] = raw["object"]
            return obj
        objects = self._load(doc, (*path, "objectFile"), raw["objectFile"], base)
        if objects is None:
            return None
        select = raw.get("select")
        if select is not None:
            chosen = [o for o in objects if object_label(o) == select]
            if len(chosen) != 1:
                labels = ", ".join(object_label(o) for o in objects) or "nothing"
                self.problem(
                    doc, (*path, "select"), f"{select} is not in {raw['objectFile']} ({labels})"
                )
                return None
            return chosen[0]
        if len(objects) != 1:
            self.problem(
                doc,
                (*path, "objectFile"),
                f"{raw['objectFile']} holds {len(objects)} objects; "
                "name one with select: Kind/name",
            )
            return None
        return objects[0]

    def _old(
        self, doc: Document, path: tuple[str | int, ...], raw: Mapping[str, Any], base: Path
    ) -> tuple[dict[str, Any] | None, bool]:
        """The case's oldObject (None when it has none) and whether it could be read."""
        if "oldObject" in raw and "oldObjectFile" in raw:
            self.problem(doc, path, "a case takes one of oldObject, oldObjectFile, not both")
            return None, False
        if "oldObject" in raw:
            old: dict[str, Any] = raw["oldObject"]
            return old, True
        if "oldObjectFile" not in raw:
            return None, True
        objects = self._load(doc, (*path, "oldObjectFile"), raw["oldObjectFile"], base)
        if objects is None:
            return None, False
        select = raw.get("select")
        chosen = [o for o in objects if select is None or object_label(o) == select]
        if len(chosen) != 1:
            self.problem(
                doc,
                (*path, "oldObjectFile"),
                f"{raw['oldObjectFile']} must hold one object"
                + (f" {select}" if select else "")
                + f", not {len(chosen)}",
            )
            return None, False
        return chosen[0], True

    def _expect(
        self, doc: Document, path: tuple[str | int, ...], raw: Mapping[str, Any], base: Path
    ) -> Expect | None:
        golden: Mapping[str, Any] | None = None
        source = ""
        if "object" in raw and "objectFile" in raw:
            self.problem(doc, path, "expect takes one of object, objectFile, not both")
            return None
        if "object" in raw:
            golden, source = raw["object"], f"golden object at {_line(doc, (*path, 'object'))}"
        elif "objectFile" in raw:
            objects = self._load(doc, (*path, "objectFile"), raw["objectFile"], base)
            if objects is None:
                return None
            if len(objects) != 1:
                self.problem(
                    doc,
                    (*path, "objectFile"),
                    f"golden file {raw['objectFile']} must hold one object, not {len(objects)}",
                )
                return None
            golden, source = objects[0], str(base / raw["objectFile"])
        if raw["outcome"] == "denied" and (golden is not None or "mountOptions" in raw):
            self.problem(doc, path, "a denied object is not admitted: no object or mountOptions")
            return None

        def strings(key: str) -> tuple[str, ...] | None:
            return tuple(raw[key]) if key in raw else None

        return Expect(
            outcome=raw["outcome"],
            golden=golden,
            golden_source=source,
            mount_options=strings("mountOptions"),
            node_options=strings("nodeOptions"),
            message=raw.get("message"),
            warning=raw.get("warning"),
            warnings=strings("warnings"),
            would_be=raw.get("wouldBe"),
            existing=raw.get("existing"),
            rule=raw.get("rule"),
            policy=raw.get("policy"),
        )

    def _nodes(
        self, doc: Document, path: tuple[str | int, ...], raw: Any, base: Path
    ) -> NodeInventory | None:
        if raw is None:
            return UnknownInventory("policy test without nodes")
        if isinstance(raw, str):
            objects = self._load(doc, path, raw, base)
            if objects is None:
                return None
            return StaticInventory(nodes_from_objects(objects))
        nodes: list[Node] = []
        for i, item in enumerate(raw):
            default = f"node-{i + 1}"
            if isinstance(item, str):
                nodes.append(Node(default, item))
            elif item.get("kind") == "Node":
                nodes.append(node_from_object(item))
            else:
                nodes.append(
                    Node(item.get("name") or default, item["kernel"], item.get("labels") or {})
                )
        return StaticInventory(nodes)


def is_suite_text(text: str) -> bool:
    """Whether a YAML text holds a ``kind: NFSPolicyTest`` document."""
    return bool(_SUITE_MARK.search(text))


def check_suites(
    files: Sequence[Path], *, builtin_profiles: Sequence[DriverProfile], schemas: Schemas
) -> tuple[int, list[str]]:
    """How many suites ``files`` hold and every problem (FILE:LINE: message) for which
    ``nfsguard policy test`` would refuse them (the policies they name included),
    without running a case."""
    reader = _Reader(schemas)
    try:
        cases = reader.suites(files)
    except SuiteError as exc:  # a file that cannot be read at all
        return reader.suites_read, list(exc.lines)
    problems = list(reader.problems)
    for policies in dict.fromkeys(c.policies for c in cases):
        if not all(Path(p).exists() for p in policies):
            continue  # reported by the reader
        try:
            sources = _read_policies(policies)
            load(sources, builtin_profiles=builtin_profiles, schemas=schemas).checked()
        except PolicyError as exc:
            problems += [str(p) for p in exc.problems]
        except SourceError as exc:
            problems.append(str(exc))
    return reader.suites_read, list(dict.fromkeys(problems))


def load_cases(
    paths: Sequence[str], *, builtin_profiles: Sequence[DriverProfile], schemas: Schemas
) -> tuple[list[Case], dict[tuple[str, ...], Engine]]:
    """Every case of the suites at ``paths`` and an engine per policy set. Raises SuiteError
    listing every problem of every suite (and of the policies they name)."""
    reader = _Reader(schemas)
    cases = reader.suites(suite_files(paths))
    engines: dict[tuple[str, ...], Engine] = {}
    for case in cases:
        if case.policies in engines or not all(Path(p).exists() for p in case.policies):
            continue  # loaded already, or a missing policy file was reported
        try:
            sources = _read_policies(case.policies)
            loaded = load(sources, builtin_profiles=builtin_profiles, schemas=schemas).checked()
            engines[case.policies] = Engine(loaded.policies, loaded.profiles)
        except PolicyError as exc:
            reader.problems += [str(p) for p in exc.problems]
        except SourceError as exc:
            reader.problems.append(f"{case.where}: {exc}")
    if reader.problems:
        raise SuiteError(list(dict.fromkeys(reader.problems)))
    return cases, engines
