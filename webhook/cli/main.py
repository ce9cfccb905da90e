"""The ``nfsguard`` command (also ``python -m webhook``).

Exit codes everywhere: 0 success, 1 a finding (denied object, lint problem,
failed test, broken audit chain), 2 bad input or usage. Errors are one line
(webhook.cli.errors maps each one to its code).
"""

from __future__ import annotations

import click

from webhook import __version__
from webhook.cli.audit import audit
from webhook.cli.certs import certs
from webhook.cli.errors import Group
from webhook.cli.native import compile_command
from webhook.cli.policy import policy
from webhook.cli.remediate import remediate
from webhook.cli.report import report
from webhook.cli.review import review
from webhook.cli.scan import scan
from webhook.cli.serve import serve
from webhook.cli.webhook_config import webhook_config


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nfsguard")
def cli() -> None:
    """Keep NFS volumes off protocol versions known to break."""


cli.add_command(serve)
cli.add_command(review)
cli.add_command(policy)
policy.add_command(compile_command)  # nfsguard policy compile (webhook/cli/native.py)
cli.add_command(certs)
cli.add_command(audit)
cli.add_command(webhook_config)
cli.add_command(scan)
cli.add_command(remediate)
cli.add_command(report)


def main() -> None:
    cli(prog_name="nfsguard")
