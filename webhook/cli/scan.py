"""``nfsguard scan``: which existing PVs and StorageClasses are at risk, and which pods
they have already stranded, on which nodes.

Each object is evaluated by the admission engine as a CREATE of itself (what the
policy says about it today) and classified (webhook/engine/scan.py). Output and
exit codes: docs/after-an-incident.md; the JSON form: webhook/data/scan-output.schema.json.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import yaml

from webhook.cli.errors import ExitCode, Refused
from webhook.cli.scanning import Pass, Report, Where, output_option, where_options
from webhook.engine.scan_report import suggest_policy


@click.command()
@where_options
@output_option
@click.option(
    "--suggest-policy",
    "suggest_file",
    type=click.Path(dir_okay=False),
    help="Write a site policy pinning exports that strand pods while no rule covers them.",
)
def scan(
    policies: tuple[str, ...],
    policy_configmap: str | None,
    nodes_file: str | None,
    kubeconfig: str | None,
    in_cluster: bool,
    as_user: str | None,
    page_size: int,
    files: tuple[str, ...],
    output: str,
    suggest_file: str | None,
) -> ExitCode:
    """Report every NFS PV and StorageClass: compliant, fixable, not-fixable-in-place,
    denied or exempt, with the pods each PV strands.

    FILES: kubectl get pv,sc,pods,pvc,events -o yaml output (- for stdin); without
    FILES, the cluster (--kubeconfig, in-cluster config, or the default kubeconfig).
    Exit 0 when nothing is at risk, 1 when something is (a fixable, not fixable or
    denied object, or pods stranded on an export no rule covers), 2 on bad input.
    """
    where = Where(
        files, policies, policy_configmap, nodes_file, kubeconfig, in_cluster, as_user, page_size
    )
    source = where.source()
    run = Pass(where.engine(source), source)
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
