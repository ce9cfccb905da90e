"""``nfsguard review``: what the webhook would do to manifests, offline.

Each object goes through the same ``evaluate`` as a served AdmissionReview, so
CI pipelines and policy authors see exactly the cluster's answer. Output and exit
codes are documented in docs/policy-authoring.md (Review).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

import click
import yaml

from webhook.admission.handler import evaluate
from webhook.admission.offline import admitted, object_label, offline_request
from webhook.api.decision import Decision, Outcome
from webhook.cli.common import (
    load_engine,
    load_inventory,
    load_old,
    manifests,
    nodes_option,
    old_option,
    operation_of,
    operation_option,
    policy_option,
    reviewing,
)
from webhook.cli.errors import ExitCode
from webhook.engine.explain import explain, to_json

#: What ``--fail-on`` can name, and which outcomes each one fails on. A denied object
#: is never admitted, so every choice fails on it too.
FAIL_ON = {
    "denied": frozenset({Outcome.DENIED}),
    "warned": frozenset({Outcome.DENIED, Outcome.WARNED}),
    "mutated": frozenset({Outcome.DENIED, Outcome.MUTATED}),
}


def _fail_on(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--fail-on`` values, repeated or comma-separated (``--fail-on mutated,warned``)."""
    names = tuple(n.strip() for value in values for n in value.split(",") if n.strip())
    for name in names:
        if name not in FAIL_ON:
            raise click.BadParameter(
                f"{name!r} is not one of {', '.join(sorted(FAIL_ON))}", ctx, param
            )
    return names


fail_on_option = click.option(
    "--fail-on",
    "fail_on",
    multiple=True,
    metavar="denied|warned|mutated",
    callback=_fail_on,
    help="Exit 1 when any object is denied (the default), warned or mutated "
    "(repeatable or comma-separated; denied always fails).",
)


def failing(fail_on: Iterable[str], *, default: Iterable[str] = ("denied",)) -> frozenset[Outcome]:
    """The outcomes that make the command exit 1."""
    names = list(fail_on) or list(default)
    return frozenset().union(*(FAIL_ON[name] for name in names)) if names else frozenset()


def bucket(decision: Decision) -> str:
    """The summary column an object is counted in."""
    if decision.outcome in (Outcome.MUTATED, Outcome.DENIED, Outcome.WARNED, Outcome.IGNORED):
        return decision.outcome.value
    return "unchanged"  # compliant, unmatched, audited, exempt: admitted as they are


def summary(counts: Counter[str]) -> str:
    total = sum(counts.values())
    return (  # "objects" whatever N: one fixed shape for the pipelines that parse it
        f"{total} objects: {counts['unchanged']} admitted unchanged, "
        f"{counts['mutated']} mutated, {counts['denied']} denied, {counts['warned']} warned, "
        f"{counts['ignored']} ignored"
    )


@click.command()
@policy_option
@nodes_option
@operation_option
@old_option
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="yaml: the admitted objects; json: every object's decision and admitted object.",
)
@fail_on_option
@click.argument("files", nargs=-1, required=True)
def review(
    policies: tuple[str, ...],
    nodes_file: str | None,
    operation: str | None,
    old_file: str | None,
    output: str,
    fail_on: tuple[str, ...],
    files: tuple[str, ...],
) -> ExitCode:
    """Print each object of FILES as it would be admitted.

    FILES are files, directories (searched recursively for *.yaml, *.yml,
    *.json) or - for stdin. Warnings and denials go to stderr, then one summary
    line. Exit 0 when nothing --fail-on names happened (default: no object
    denied), 1 when it did, 2 on bad input (a document without apiVersion or
    kind is named by file, line and document number).
    """
    engine = load_engine(policies)
    inventory = load_inventory(nodes_file)
    olds = load_old(old_file)
    op = operation_of(operation, old_file)
    fails = failing(fail_on)
    stream: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    failed = False
    for count, (name, obj) in enumerate(manifests(files), 1):
        label = object_label(obj)
        with reviewing(name, obj):
            request = offline_request(obj, op, f"review-{count}", olds.get(label))
            evaluation = evaluate(engine, request, inventory)
        decision = evaluation.decision
        counts[bucket(decision)] += 1
        failed = failed or decision.outcome in fails
        for warning in decision.warnings:
            click.echo(f"{name}: {label}: warning: {warning}", err=True)
        if not decision.allowed:
            click.echo(f"{name}: {label}: denied: {decision.message}", err=True)
        elif decision.recorded and decision.message:
            click.echo(f"{name}: {label}: {decision.outcome.value}: {decision.message}", err=True)
        result = admitted(obj, decision) if decision.allowed else None
        if output == "json":
            explained = to_json(explain(evaluation, obj, source=name, operation=op))
            records.append({**explained, "object": result})
        elif result is not None:
            stream.append(result)
    if output == "json":
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif stream:
        sys.stdout.write(yaml.safe_dump_all(stream, sort_keys=False, default_flow_style=False))
    click.echo(summary(counts), err=True)
    return ExitCode.FINDING if failed else ExitCode.OK


__all__ = ["fail_on_option", "failing", "review"]
