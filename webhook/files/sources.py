"""Reading files: policies, manifests and node inventories (the I/O the core avoids)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

POLICY_SUFFIXES = (".yaml", ".yml")


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


def load_manifests(text: str, source: str) -> Iterator[dict[str, Any]]:
    """Objects of a multi-document YAML (or JSON) text; ``kind: List`` is flattened."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SourceError(f"{source}{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"{source}: invalid YAML: {exc}") from None
    for doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SourceError(f"{source}: a manifest must be a mapping, got {type(doc).__name__}")
        if isinstance(doc.get("kind"), str) and doc["kind"].endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise SourceError(f"{source}: {doc['kind']}.items must be a list")
            for item in items:
                if not isinstance(item, dict):
                    raise SourceError(f"{source}: list items must be mappings")
                yield item
        else:
            yield doc
