"""``nfsguard review``: what the webhook would do to manifests, offline.

Each object goes through the same ``decide`` as a served AdmissionReview, so
CI pipelines and policy authors see exactly the cluster's answer.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import yaml

from webhook.admission.handler import decide
from webhook.admission.offline import admitted, object_label, offline_request
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


@click.command()
@policy_option
@nodes_option
@operation_option
@old_option
@click.argument("files", nargs=-1, required=True)
def review(
    policies: tuple[str, ...],
    nodes_file: str | None,
    operation: str | None,
    old_file: str | None,
    files: tuple[str, ...],
) -> ExitCode:
    """Print each object of FILES (or - for stdin) as it would be admitted.

    Warnings and denials go to stderr. Exit 0 when every object is admitted,
    1 when any is denied, 2 on bad input.
    """
    engine = load_engine(policies)
    inventory = load_inventory(nodes_file)
    olds = load_old(old_file)
    op = operation_of(operation, old_file)
    out: list[dict[str, Any]] = []
    denied = 0
    for count, (name, obj) in enumerate(manifests(files), 1):
        label = object_label(obj)
        with reviewing(name, obj):
            request = offline_request(obj, op, f"review-{count}", olds.get(label))
            decision = decide(engine, request, inventory)
        for warning in decision.warnings:
            click.echo(f"{name}: {label}: warning: {warning}", err=True)
        if not decision.allowed:
            denied += 1
            click.echo(f"{name}: {label}: denied: {decision.message}", err=True)
            continue
        if decision.recorded and decision.message:
            click.echo(f"{name}: {label}: {decision.outcome.value}: {decision.message}", err=True)
        out.append(admitted(obj, decision))
    if out:
        sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False))
    return ExitCode.FINDING if denied else ExitCode.OK


__all__ = ["review"]
