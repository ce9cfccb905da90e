"""Reading files: policies, manifests and node inventories (the I/O the core avoids).

Reading is bounded like parsing (webhook.config.documents.Limits): a policy file
larger than :data:`MAX_POLICY_BYTES`, a policy set larger than
:data:`MAX_POLICY_SET_BYTES`, a manifest larger than :data:`MAX_MANIFEST_BYTES`
is refused before it is parsed, and only regular files are opened (a FIFO named
``x.yaml`` would block a reload forever).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from webhook.config.documents import (
    BoundedLoader,
    InputLimitError,
    Limits,
    UnreadableSource,
    reader_error_at,
)

POLICY_SUFFIXES = (".yaml", ".yml")
#: What ``nfsguard review`` and ``policy explain`` read from a directory (recursively).
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

#: One policy file: 4x a 10,000-rule policy (1 MiB, bench.workload), 4x what one
#: ConfigMap can hold (1 MiB, etcd's request limit).
MAX_POLICY_BYTES = 4 * 1024 * 1024
#: Every file of one policy set together (what a reload parses).
MAX_POLICY_SET_BYTES = 16 * 1024 * 1024
#: One manifest or inventory file (``kubectl get pv -o yaml`` of a large cluster).
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
#: Manifests (review, scan, --nodes, --old): as deep as policies, many more documents.
MANIFEST_LIMITS = Limits(max_documents=1_000_000)


class SourceError(ValueError):
    """A file that cannot be read or parsed; the message is one line, ``FILE:LINE: ...``."""


def _why_not_a_file(path: Path) -> str | None:
    """Why ``path`` (found in a directory, or named) is not a readable regular file,
    following symlinks; None when it is one."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop: not a policy file"
        if exc.errno == errno.ENOENT and path.is_symlink():
            return f"dangling symlink to {os.readlink(path)!r}: not a policy file"
        return f"cannot read: {exc.strerror}"
    if stat.S_ISDIR(mode):
        return "a directory, not a policy file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a FIFO, socket or device): not read"
    return None


def _as_a_file(why: str) -> str:
    """:func:`_why_not_a_file` said of a manifest or inventory file, not a policy file."""
    return why.removesuffix(": not a policy file").replace(", not a policy file", ", not a file")


def _listed(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise SourceError(f"{directory}: cannot list directory: {exc.strerror}") from None


def policy_files(paths: Iterable[str]) -> list[Path]:
    """Files named, and the ``*.yaml``/``*.yml`` entries of directories named, in file
    name order. Hidden entries are skipped (a ConfigMap volume's ``..data`` links);
    an entry that is not a readable file (a dangling symlink, a loop, a directory) is
    kept, for :func:`read_policy_sources` to report. A named path that does not exist
    or a directory that cannot be listed raises SourceError."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                p
                for p in _listed(path)
                if p.suffix in POLICY_SUFFIXES and not p.name.startswith(".")
            )
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            raise SourceError(f"{raw}: no such file or directory")
    return files


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit``; raises OSError, or
    SourceError naming the limit."""
    # O_NONBLOCK: a FIFO swapped in after the check must not block the open.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError("not a regular file: not read")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SourceError(f"larger than {limit // (1024 * 1024)} MiB: not read")
    return data


def _decoded(data: bytes) -> str | UnreadableSource:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return UnreadableSource(
            f"not UTF-8: {exc.reason} (byte 0x{data[exc.start]:02x})", line, column
        )


def read_policy_source(path: Path, limit: int = MAX_POLICY_BYTES) -> str | UnreadableSource:
    """The text of one policy file, or why it cannot be read (never raises)."""
    why = _why_not_a_file(path)
    if why is not None:
        return UnreadableSource(why)
    try:
        return _decoded(_read_bounded(path, limit))
    except OSError as exc:
        return UnreadableSource(f"cannot read: {exc.strerror}")
    except SourceError as exc:
        return UnreadableSource(str(exc))


def manifest_files(paths: Iterable[str]) -> list[str]:
    """``-``, files named, and every ``*.yaml``/``*.yml``/``*.json`` under directories
    named (recursively, in path order; hidden entries skipped), as review reads them.
    Nothing under a directory is skipped unseen: a directory that cannot be listed, or
    a manifest entry that is not a readable regular file (a dangling symlink, a loop,
    a FIFO), raises SourceError in one line rather than drop its objects from the
    answer."""
    files: list[str] = []
    for raw in paths:
        path = Path(raw)
        if raw == "-":
            files.append(raw)
        elif path.is_dir():
            found = _manifests_under(path)
            if not found:
                raise SourceError(f"{raw}: no manifests (*.yaml, *.yml, *.json) in this directory")
            files.extend(str(p) for p in found)
        elif path.exists():
            files.append(raw)
        else:
            raise SourceError(f"{raw}: no such file or directory")
    return files


def _manifests_under(root: Path) -> list[Path]:
    """The manifest files under ``root``, sorted by path. Symlinked directories are
    followed, each directory read once (a link back up is no loop)."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            info = directory.stat()
        except OSError as exc:  # a directory found a moment ago is gone
            raise SourceError(f"{directory}: cannot read: {exc.strerror}") from None
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        for entry in _listed(directory):
            if entry.name.startswith("."):
                continue
            try:
                is_dir = stat.S_ISDIR(entry.stat().st_mode)
            except OSError:  # dangling, a loop, or not to be looked at: said below
                is_dir = False
            if is_dir:
                pending.append(entry)
                continue
            if entry.suffix not in MANIFEST_SUFFIXES:
                continue
            why = _why_not_a_file(entry)
            if why is not None:
                raise SourceError(f"{entry}: {_as_a_file(why)}")
            found.append(entry)
    return sorted(found)


def read_text(path: Path | str, limit: int = MAX_MANIFEST_BYTES) -> str:
    """The UTF-8 text of a file (``-``: stdin), at most ``limit`` bytes. Raises
    SourceError in one line."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(limit + 1)
            if len(data) > limit:
                raise SourceError(f"-: larger than {limit // (1024 * 1024)} MiB: not read")
        else:
            why = _why_not_a_file(Path(path))
            if why is not None:
                raise SourceError(f"{path}: {_as_a_file(why)}")
            data = _read_bounded(Path(path), limit)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
    except SourceError as exc:
        message = str(exc)
        raise SourceError(
            message if message.startswith(f"{path}:") else f"{path}: {message}"
        ) from None
    text = _decoded(data)
    if isinstance(text, UnreadableSource):
        raise SourceError(f"{path}:{text.line}: cannot read: {text}")
    return text


def read_policy_sources(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(file name, text) of every policy file, in load order. A file that cannot be
    read has an :class:`UnreadableSource` for its text, which ``load`` reports as a
    problem at its place: a policy file never silently drops out of a set (or of a
    reload). A set beyond :data:`MAX_POLICY_SET_BYTES` reports its files from the
    one that crosses it on. Raises SourceError for a named path that does not
    exist, a directory that cannot be listed, or no policy file at all."""
    files = policy_files(paths)
    if not files:
        raise SourceError(f"{', '.join(paths)}: no policy files (*.yaml, *.yml)")
    sources: list[tuple[str, str]] = []
    left = MAX_POLICY_SET_BYTES
    for file in files:
        text = read_policy_source(file, min(MAX_POLICY_BYTES, left))
        if not isinstance(text, UnreadableSource):
            left -= len(text.encode("utf-8"))
        elif left < MAX_POLICY_BYTES and text.startswith("larger than"):
            mib = MAX_POLICY_SET_BYTES // (1024 * 1024)
            text = UnreadableSource(
                f"the policy files together are larger than {mib} MiB: not read"
            )
        sources.append((str(file), text))
    return sources


class _ManifestLoader(BoundedLoader):
    """The bounded safe loader, refusing a duplicate key in a mapping (the last one
    would silently win; the apiserver's strict field validation refuses it too)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.MarkedYAMLError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen[key] = key_node.start_mark
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _documents(text: str) -> list[tuple[int, Any]]:
    """(line, document) of every YAML document of ``text``, lines from 1."""
    loader = _ManifestLoader(text, MANIFEST_LIMITS)
    try:
        out: list[tuple[int, Any]] = []
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node said there is one
            out.append((node.start_mark.line + 1, loader.construct_document(node)))
        return out
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar it cannot type
        raise yaml.YAMLError(f"cannot read a value: {exc}") from None
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
    except InputLimitError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SourceError(f"{source}{line}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SourceError(f"{source}{line}: invalid YAML: {exc.problem}") from None
    except yaml.reader.ReaderError as exc:
        number, _, message = reader_error_at(exc, text)
        raise SourceError(f"{source}:{number}: invalid YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
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
