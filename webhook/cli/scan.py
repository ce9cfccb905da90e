"""``nfsguard scan``: which existing PVs and StorageClasses are at risk, and which pods
they have already stranded, on which nodes.

Each object is evaluated by the admission engine as a CREATE of itself (what the
policy says about it today) and classified (webhook/engine/scan.py). Output and
exit codes: docs/after-an-incident.md; the JSON form: webhook/data/scan-output.schema.json.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from webhook.cli.common import nodes_option, policy_option
from webhook.cli.errors import ExitCode, Refused
from webhook.cli.scanning import (
    FileSource,
    LiveSource,
    Pass,
    Report,
    Source,
    connect,
    output_option,
    policy_engine,
)
from webhook.cluster.scan import DEFAULT_PAGE
from webhook.engine.scan_report import suggest_policy

live_options = [
    click.option(
        "--kubeconfig", type=click.Path(dir_okay=False, exists=True), help="Scan this cluster."
    ),
    click.option("--in-cluster", is_flag=True, help="Use the pod's service account."),
    click.option(
        "--page-size",
        type=click.IntRange(1, 10000),
        default=DEFAULT_PAGE,
        show_default=True,
        help="Objects per list page (limit/continue).",
    ),
]


F = TypeVar("F", bound=Callable[..., Any])


def with_live_options(f: F) -> F:
    """The options of a live run (--kubeconfig, --in-cluster, --page-size)."""
    for option in reversed(live_options):
        f = option(f)
    return f


def open_source(
    files: tuple[str, ...],
    nodes_file: str | None,
    kubeconfig: str | None,
    in_cluster: bool,
    page: int,
) -> Source:
    if files and (kubeconfig or in_cluster):
        raise Refused("nfsguard: give FILES or --kubeconfig/--in-cluster, not both")
    if files:
        return FileSource(files, nodes_file)
    return LiveSource(connect(kubeconfig, in_cluster, page))


@click.command()
@policy_option
@nodes_option
@output_option
@with_live_options
@click.option(
    "--suggest-policy",
    "suggest_file",
    type=click.Path(dir_okay=False),
    help="Write a site policy pinning exports that strand pods while no rule covers them.",
)
@click.argument("files", nargs=-1)
def scan(
    policies: tuple[str, ...],
    nodes_file: str | None,
    output: str,
    kubeconfig: str | None,
    in_cluster: bool,
    page_size: int,
    suggest_file: str | None,
    files: tuple[str, ...],
) -> ExitCode:
    """Report every NFS PV and StorageClass: compliant, fixable, not-fixable-in-place,
    denied or exempt, with the pods each PV strands.

    FILES: kubectl get pv,sc,pods,pvc,events -o yaml output (- for stdin); without
    FILES, the cluster (--kubeconfig, in-cluster config, or the default kubeconfig).
    Exit 0 when nothing is at risk, 1 when something is (a fixable, not fixable or
    denied object, or pods stranded on an export no rule covers), 2 on bad input.
    """
    engine = policy_engine(policies)
    source = open_source(files, nodes_file, kubeconfig, in_cluster, page_size)
    run = Pass(engine, source)
    report = Report(output)
    for scanned in run:
        report.add(scanned)
    report.finish(run.ignored)
    at_risk = any(report.summary[v] for v in ("fixable", "not-fixable-in-place", "denied"))
    if report.uncovered:
        exports = ", ".join(
            f"{e.server}:{e.path}" if e.path else e.server
            for e in report.uncovered.exports.values()
        )
        click.echo(f"nfsguard: pods are stranded on exports no rule covers: {exports}", err=True)
        suggested = suggest_policy(
            report.uncovered.exports.values(),
            version=f"suggested-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}",
        )
        text = yaml.safe_dump(suggested, sort_keys=False, default_flow_style=False)
        if suggest_file:
            try:
                Path(suggest_file).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise Refused(f"{suggest_file}: cannot write: {exc.strerror}") from None
            click.echo(f"nfsguard: suggested policy written to {suggest_file}", err=True)
        else:
            click.echo(
                "nfsguard: a rule that pins them (review, then add to your site policy):", err=True
            )
            click.echo(text, err=True, nl=False)
    return ExitCode.FINDING if at_risk or report.uncovered else ExitCode.OK


__all__ = ["scan"]
