"""Helpers shared by the CLI commands: loading policies and inventories with
one-line errors and the documented exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import click

from webhook.config.documents import PolicyError
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.files.sources import SourceError, load_manifests, read_policy_sources, read_text
from webhook.nfs.inventory import (
    NodeInventory,
    StaticInventory,
    UnknownInventory,
    nodes_from_objects,
)

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT = 0, 1, 2

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
    type=click.Path(dir_okay=False),
    help="Node inventory: kubectl get nodes -o yaml output (else each policy's unknownNodes).",
)
operation_option = click.option(
    "--operation", type=click.Choice(["CREATE", "UPDATE"]), default="CREATE", show_default=True
)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"nfsguard: {message}" if ":" not in message.split(" ")[0] else message, err=True)
    raise SystemExit(code)


def load_engine(paths: Sequence[str]) -> Engine:
    """An engine for the policies at ``paths``, or exit 2 with every problem on its own line."""
    try:
        sources = read_policy_sources(paths)
        builtin, schemas = packaged.builtin_profiles(), packaged.schemas()
        loaded = load(sources, builtin_profiles=builtin, schemas=schemas).checked()
        return Engine(loaded.policies, loaded.profiles)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except SourceError as exc:
        fail(str(exc))


def load_inventory(nodes_file: str | None) -> NodeInventory:
    if nodes_file is None:
        return UnknownInventory("offline review without --nodes")
    try:
        return StaticInventory(
            nodes_from_objects(load_manifests(read_text(nodes_file), nodes_file))
        )
    except SourceError as exc:
        fail(str(exc))
