"""YAML documents with the position of every key and value, and what is wrong with them.

Every kind nfsguard reads (policies, driver profiles, policy test suites) is parsed
here once, so each problem can say ``FILE:LINE:COL`` and a duplicate key (which
PyYAML would silently keep the last of) is a problem, not a surprise.

Parsing is bounded (:class:`Limits`, :class:`BoundedLoader`): a file is YAML an
operator or a pull request wrote, and a 604-byte "billion laughs" document
(nine levels of nine aliases) expands to 9**9 nodes. The composer counts what
aliases add, how deep collections nest (PyYAML composes recursively: a few
thousand ``[`` would hit RecursionError) and how many documents a file has, and
stops at the first limit with a ``FILE:LINE:COL`` problem, before anything is
expanded (docs/policy-authoring.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from webhook.api.policy import Position

#: The apiVersion of every document kind nfsguard reads.
API_VERSION = "nfsguard.io/v1alpha1"

#: Where a value sits in a document: keys and list indexes from the root.
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Limits:
    """What one YAML file may hold before it is refused (docs/policy-authoring.md)."""

    #: Collections inside collections: a policy nests about 8 deep, a manifest 20.
    max_depth: int = 100
    #: Nodes that aliases add to one document, counted expanded (an alias of a
    #: 10-node mapping adds 10): the bound on what ``*a`` can multiply.
    max_alias_nodes: int = 100_000
    #: Documents (``---``) in one file.
    max_documents: int = 1_000


#: Policy, driver profile and test suite files.
POLICY_LIMITS = Limits()


class InputLimitError(yaml.MarkedYAMLError):
    """A YAML text is beyond one of its :class:`Limits` (or an alias refers to the
    collection it is in); ``problem`` says which, ``problem_mark`` where."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(None, None, problem, mark)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader whose composer enforces :class:`Limits` while it composes,
    so nothing beyond them is ever built: an alias is counted at the expanded size of
    the node it names (known when that node was composed), depth is counted on the
    way down, documents as they start."""

    def __init__(self, stream: str | bytes, limits: Limits = POLICY_LIMITS) -> None:
        super().__init__(stream)
        self.limits = limits
        self._depth = 0
        self._documents = 0
        self._alias_nodes = 0
        #: id(node) -> nodes it stands for, expanded; absent while it is being composed.
        self._sizes: dict[int, int] = {}

    def compose_document(self) -> yaml.Node | None:
        self._documents += 1
        if self._documents > self.limits.max_documents:
            raise InputLimitError(
                f"more than {self.limits.max_documents} YAML documents in one file",
                self._next_mark(),
            )
        self._alias_nodes = 0
        self._sizes = {}
        node: yaml.Node | None = super().compose_document()
        self._sizes = {}
        return node

    def _next_mark(self) -> yaml.Mark | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark  # type: ignore[return-value]

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self._next_mark()
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:  # &a [*a]: PyYAML would hand back a cycle
                raise InputLimitError("an alias names the collection it is in", mark)
            self._alias_nodes += size
            if self._alias_nodes > self.limits.max_alias_nodes:
                raise InputLimitError(
                    f"aliases expand to more than {self.limits.max_alias_nodes} nodes "
                    "in one document (an alias bomb?)",
                    mark,
                )
            return node
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                raise InputLimitError(f"nested deeper than {self.limits.max_depth} levels", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def compose_documents(text: str, limits: Limits = POLICY_LIMITS) -> Iterator[yaml.Node]:
    """The root node of every YAML document of ``text``, within ``limits``. Raises
    yaml.YAMLError (:class:`InputLimitError` for a limit)."""
    loader = BoundedLoader(text, limits)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield node
    finally:
        loader.dispose()


def reader_error_at(exc: yaml.reader.ReaderError, text: str) -> tuple[int, int, str]:
    """(line, column, message) of a character YAML does not accept (a control
    character such as ``\\x08``): PyYAML words it on two lines, by string offset."""
    before = text[: max(exc.position, 0)]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    character = exc.character
    code = character if isinstance(character, int) else ord(character) if character else 0
    return line, column, f"character #x{code:04x} is not allowed in YAML ({exc.reason})"


def yaml_problem(exc: yaml.YAMLError, source: str, text: str = "") -> Problem:
    """``exc`` as a problem at its place: a limit in its own words, else a syntax error.
    ``text``: what was parsed, to place a character YAML refuses."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        position = _pos(source, mark) if mark is not None else Position(source, 1, 1)
        if isinstance(exc, InputLimitError):
            return Problem(position, exc.problem or "beyond a limit")
        return Problem(
            position, f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}"
        )
    if isinstance(exc, yaml.reader.ReaderError):
        line, column, message = reader_error_at(exc, text)
        return Problem(Position(source, line, column), f"YAML syntax error: {message}")
    return Problem(Position(source, 1, 1), f"YAML error: {' '.join(str(exc).split())}")


class UnreadableSource(str):
    """Stands in for the text of a policy file that could not be read (a dangling
    symlink, a loop, no permission, not UTF-8, too large): its value is the reason,
    and :func:`webhook.config.load.load` reports it as a problem at ``line``, so a
    file that cannot be read is never silently left out of a policy set."""

    line: int
    column: int

    def __new__(cls, reason: str, line: int = 1, column: int = 1) -> UnreadableSource:
        self = super().__new__(cls, reason)
        self.line, self.column = line, column
        return self

    def problem(self, source: str) -> Problem:
        return Problem(Position(source, self.line, self.column), str(self))


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
                if not isinstance(key_node, yaml.ScalarNode):
                    raise yaml.MarkedYAMLError(
                        None, None, "a mapping key must be a scalar", key_node.start_mark
                    )
                key = self._scalar(key_node)
                if not isinstance(key, str | int | float | bool) or key is None:
                    key = str(key)
                if str(key) in out:  # 1 and "1" are one key once read
                    self.problems.append(
                        Problem(_pos(self.source, key_node.start_mark), f"duplicate key {key!r}")
                    )
                child = (*path, str(key))
                self.keys[child] = _pos(self.source, key_node.start_mark)
                out[str(key)] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        """A scalar as the safe loader types it; one it cannot (``2026-13-45`` looks
        like a date, ``!!binary`` that is not base64) is a syntax error at its place."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.MarkedYAMLError(
                None, None, f"cannot read {node.value!r}: {exc}", node.start_mark
            ) from None


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
        for node in compose_documents(text):
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
    except yaml.YAMLError as exc:
        return documents, [yaml_problem(exc, source, text)]
    return documents, []
