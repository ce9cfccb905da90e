"""Helpers shared by the CLI commands: the options they share, loading policies and
inventories, and reading the manifests they review."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import click

from webhook.admission.errors import BadRequest
from webhook.admission.offline import object_label
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.files.sources import load_manifests, manifest_files, read_policy_sources, read_text
from webhook.nfs.inventory import (
    NodeInventory,
    StaticInventory,
    UnknownInventory,
    nodes_from_objects,
)

#: Options every command that evaluates policies shares, spelled once.
policy_option = click.option(
    "--policy",
    "policies",
    multiple=True,
    required=True,
    help="Policy file or directory (repeatable).",
)
nodes_option = click.option(
    "--nodes",
    "nodes_file",
    metavar="FILE",  # read by read_text, whose refusals are one line (not click's usage)
    help="Node inventory: kubectl get nodes -o yaml output (else each policy's unknownNodes).",
)
operation_option = click.option(
    "--operation",
    type=click.Choice(["CREATE", "UPDATE"]),
    default=None,
    help="The request's operation [default: CREATE, or UPDATE with --old].",
)
old_option = click.option(
    "--old",
    "old_file",
    metavar="FILE",
    help="The objects as stored before an UPDATE (oldObject), matched by Kind/name: an "
    "update that keeps an existing object's NFS options is never denied.",
)


def operation_of(operation: str | None, old_file: str | None) -> str:
    """``--operation``, defaulting to UPDATE when ``--old`` gives the old objects."""
    return operation or ("UPDATE" if old_file is not None else "CREATE")


def load_old(old_file: str | None) -> dict[str, dict[str, Any]]:
    """The objects of ``--old``, by ``Kind/name``. Raises SourceError."""
    if old_file is None:
        return {}
    return {object_label(o): o for o in load_manifests(read_text(old_file), old_file)}


def load_engine(paths: Sequence[str]) -> Engine:
    """An engine for the policies at ``paths``. Raises PolicyError (every problem) or
    SourceError."""
    sources = read_policy_sources(paths)
    builtin, schemas = packaged.builtin_profiles(), packaged.schemas()
    loaded = load(sources, builtin_profiles=builtin, schemas=schemas).checked()
    return Engine(loaded.policies, loaded.profiles)


def load_inventory(nodes_file: str | None) -> NodeInventory:
    if nodes_file is None:
        return UnknownInventory("offline review without --nodes")
    return StaticInventory(nodes_from_objects(load_manifests(read_text(nodes_file), nodes_file)))


def manifests(files: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object of ``files`` (``-`` is stdin; directories are searched recursively for
    ``*.yaml``, ``*.yml``, ``*.json``) with the name messages give its file. Every file
    is read before the first object is answered: input that does not parse, or a
    document without apiVersion/kind, is refused (exit 2) before any answer."""
    read: list[tuple[str, dict[str, Any]]] = []
    for source in manifest_files(files):
        name = "<stdin>" if source == "-" else source
        read.extend((name, obj) for obj in load_manifests(read_text(source), name, type_meta=True))
    yield from read


@contextmanager
def reviewing(name: str, obj: Mapping[str, Any]) -> Iterator[None]:
    """An object that cannot be reviewed (BadRequest) is refused in one line that names
    it: ``FILE: Kind/name: message``."""
    try:
        yield
    except BadRequest as exc:
        raise BadRequest(f"{name}: {object_label(obj)}: {exc.message}") from None
