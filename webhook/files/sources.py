"""Reading files: policies, manifests and node inventories (the I/O the core avoids)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

POLICY_SUFFIXES = (".yaml", ".yml")
#: What ``nfsguard review`` and ``policy explain`` read from a directory (recursively).
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class SourceError(ValueError):
    """A file that cannot be read or parsed; the message is one line, ``FILE:LINE: ...``."""


def policy_files(paths: Iterable[str]) -> list[Path]:
    """Files named, and the ``*.yaml``/``*.yml`` files of directories named, in file
    name order. Hidden entries are skipped (a ConfigMap volume's ``..data`` links)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    (
                        p
                        for p in path.iterdir()
                        if p.suffix in POLICY_SUFFIXES
                        and not p.name.startswith(".")
                        and p.is_file()
                    ),
                    key=lambda p: p.name,
                )
            )
        elif path.exists():
            files.append(path)
        else:
            raise SourceError(f"{raw}: no such file or directory")
    return files


def manifest_files(paths: Iterable[str]) -> list[str]:
    """``-``, files named, and every ``*.yaml``/``*.yml``/``*.json`` under directories
    named (recursively, in path order; hidden entries skipped), as review reads them."""
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if raw == "-":
            files.append(raw)
        elif path.is_dir():
            found = [
                p
                for p in path.rglob("*")
                if p.suffix in MANIFEST_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            if not found:
                raise SourceError(f"{raw}: no manifests (*.yaml, *.yml, *.json) in this directory")
            files.extend(str(p) for p in sorted(found))
        elif path.exists():
            files.append(raw)
        else:
            raise SourceError(f"{raw}: no such file or directory")
    return files


def read_text(path: Path | str) -> str:
    try:
        if str(path) == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None


def read_policy_sources(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(file name, text) of every policy file, in load order."""
    files = policy_files(paths)
    if not files:
        raise SourceError(f"{', '.join(paths)}: no policy files (*.yaml, *.yml)")
    return [(str(f), read_text(f)) for f in files]


def _documents(text: str) -> list[tuple[int, Any]]:
    """(line, document) of every YAML document of ``text``, lines from 1."""
    loader = yaml.SafeLoader(text)
    try:
        out: list[tuple[int, Any]] = []
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node said there is one
            out.append((node.start_mark.line + 1, loader.construct_document(node)))
        return out
    finally:
        loader.dispose()


def _type_meta(source: str, line: int, where: str, obj: dict[str, Any]) -> None:
    missing = [key for key in ("apiVersion", "kind") if not isinstance(obj.get(key), str)]
    if missing:
        raise SourceError(
            f"{source}:{line}: {where}: no {' and no '.join(missing)} "
            "(every manifest names its apiVersion and kind)"
        )


def load_manifests(text: str, source: str, *, type_meta: bool = False) -> Iterator[dict[str, Any]]:
    """Objects of a multi-document YAML (or JSON) text; ``kind: List`` is flattened.
    With ``type_meta``, a document (or List item) without ``apiVersion``/``kind`` is
    refused, naming the file, line and document number (from 1): review must not
    answer for an object the apiserver would never send."""
    try:
        documents = _documents(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SourceError(f"{source}{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"{source}: invalid YAML: {exc}") from None
    for index, (at, doc) in enumerate(documents, 1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SourceError(f"{source}: a manifest must be a mapping, got {type(doc).__name__}")
        if type_meta:
            _type_meta(source, at, f"document {index}", doc)
        if isinstance(doc.get("kind"), str) and doc["kind"].endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise SourceError(f"{source}: {doc['kind']}.items must be a list")
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise SourceError(f"{source}: list items must be mappings")
                if type_meta:
                    _type_meta(source, at, f"document {index} items[{i}]", item)
                yield item
        else:
            yield doc
