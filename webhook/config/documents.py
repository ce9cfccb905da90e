"""YAML documents with the position of every key and value, and what is wrong with them.

Every kind nfsguard reads (policies, driver profiles, policy test suites) is parsed
here once, so each problem can say ``FILE:LINE:COL`` and a duplicate key (which
PyYAML would silently keep the last of) is a problem, not a surprise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from webhook.api.policy import Position

#: The apiVersion of every document kind nfsguard reads.
API_VERSION = "nfsguard.io/v1alpha1"

#: Where a value sits in a document: keys and list indexes from the root.
Path = tuple[str | int, ...]


class Severity(StrEnum):
    ERROR = "error"  # the file does not load
    WARNING = "warning"  # it loads, but probably does not do what its author meant


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, printed as ``FILE:LINE:COL: message``."""

    position: Position
    message: str
    severity: Severity = Severity.ERROR
    #: A warning's name (``unsafe-pin``...): what a rule's ``lint: {ignore: [...]}``
    #: acknowledges, printed after the message (docs/policy-authoring.md lists them).
    code: str = ""

    def __str__(self) -> str:
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        suffix = f" [{self.code}]" if self.code else ""
        return f"{self.position}: {prefix}{self.message}{suffix}"


def in_file_order(problems: Sequence[Problem]) -> list[Problem]:
    """``problems`` by file, line and column; problems at one place keep their order."""
    return sorted(problems, key=lambda p: (p.position.file, p.position.line, p.position.column))


class PolicyError(ValueError):
    """The policy cannot be loaded; ``problems`` says every reason, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(in_file_order(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Document:
    """One YAML document with the position of every key and value."""

    data: Any
    source: str
    start: Position
    values: Mapping[Path, Position]
    keys: Mapping[Path, Position]
    problems: tuple[Problem, ...] = ()  # e.g. duplicate keys (the last one wins)

    def at(self, path: Path, *, key: bool = False) -> Position:
        """The position of ``path`` (its key when ``key``), or of its nearest parent."""
        table = self.keys if key else self.values
        for n in range(len(path), -1, -1):
            pos = table.get(path[:n]) or self.values.get(path[:n])
            if pos is not None:
                return pos
        return self.start

    def kind(self) -> str | None:
        if isinstance(self.data, dict):
            kind = self.data.get("kind")
            return kind if isinstance(kind, str) else None
        return None


def _pos(source: str, mark: yaml.Mark) -> Position:
    return Position(source, mark.line + 1, mark.column + 1)


class _Builder:
    """Turns a composed YAML node into plain data while recording positions."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[Path, Position] = {}
        self.keys: dict[Path, Position] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.values[path] = _pos(self.source, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    key = str(key)
                if key in out:
                    self.problems.append(
                        Problem(_pos(self.source, key_node.start_mark), f"duplicate key {key!r}")
                    )
                child = (*path, str(key))
                self.keys[child] = _pos(self.source, key_node.start_mark)
                out[str(key)] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)


def parse_documents(text: str, source: str) -> list[Document]:
    """Every non-empty YAML document of ``text``. Raises PolicyError on a syntax error
    or a duplicate key."""
    documents, problems = scan_documents(text, source)
    problems += [p for doc in documents for p in doc.problems]
    if problems:
        raise PolicyError(problems)
    return documents


def scan_documents(text: str, source: str) -> tuple[list[Document], list[Problem]]:
    """Like ``parse_documents``, but never raises: the documents read before a YAML
    syntax error, and the error. Duplicate keys stay in ``Document.problems``."""
    documents: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            builder = _Builder(source)
            data = builder.build(node, ())
            documents.append(
                Document(
                    data,
                    source,
                    _pos(source, node.start_mark),
                    builder.values,
                    builder.keys,
                    tuple(builder.problems),
                )
            )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = _pos(source, mark) if mark is not None else Position(source, 1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        return documents, [Problem(position, f"YAML syntax error: {reason}")]
    except yaml.YAMLError as exc:
        return documents, [Problem(Position(source, 1, 1), f"YAML error: {exc}")]
    return documents, []
