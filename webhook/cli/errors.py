"""What every ``nfsguard`` command exits with, and what it prints when it refuses its
input: here, once, for every command.

Exit codes (README): 0 ok, 1 a finding (a denied object, a lint problem, a failed
test, a broken audit chain, a certificate due for renewal), 2 bad input or usage;
``audit verify`` and ``merge`` add 3, a torn final line, and 4, an intact chain not
proven (signatures unchecked, records not anchored; docs/audit.md). A command returns its
exit code; bad input is an exception, and :class:`Group` turns each one below into
exit 2 with its lines on stderr, never a traceback:

- a policy that does not load (:class:`PolicyError`): every problem on its own line,
  ``FILE:LINE:COL: message``;
- a test suite that cannot run (:class:`SuiteError`): every problem, ``FILE:LINE: message``;
- a file that cannot be read or parsed (:class:`SourceError`) and an audit signing key
  that does not load (:class:`AuditKeyError`): one line, ``FILE[:LINE]: message``;
- an object that cannot be reviewed (:class:`BadRequest`, e.g. ``UnreviewableObject``
  from ``admission.handler.decide``): one line; ``cli.common.reviewing`` names the file
  and object first;
- input a command refuses in its own words (:class:`Refused`: a line that is not an
  audit record, a bad option value, an answer from the cluster): its lines.

Usage errors stay click's own (``Usage: ...``, exit 2).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import click

from webhook.admission.errors import BadRequest
from webhook.audit.signing import AuditKeyError
from webhook.config.documents import PolicyError
from webhook.files.sources import SourceError
from webhook.suites.suite import SuiteError


class ExitCode(IntEnum):
    OK = 0
    FINDING = 1
    BAD_INPUT = 2


class Refused(Exception):
    """Input a command refuses, worded by the command: ``lines`` go to stderr as they
    are and the command exits with ``code``."""

    def __init__(self, *lines: str, code: int = ExitCode.BAD_INPUT) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.code = code


def one_line(message: str) -> str:
    """``message`` as it is when it starts at a place (``FILE:`` or ``FILE:LINE:``),
    else after ``nfsguard: ``, so every line names where it comes from."""
    return message if ":" in message.split(" ")[0] else f"nfsguard: {message}"


def refusal(exc: Exception) -> Refused | None:
    """The lines and exit code of an error that is bad input; None for any other."""
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, PolicyError):
        return Refused(*(str(problem) for problem in exc.problems))
    if isinstance(exc, SuiteError):
        return Refused(*exc.lines)
    if isinstance(exc, SourceError):
        return Refused(one_line(str(exc)))
    if isinstance(exc, AuditKeyError):
        return Refused(str(exc))
    if isinstance(exc, BadRequest):
        return Refused(one_line(exc.message))
    return None


class Group(click.Group):
    """A command group whose commands' return values are exit codes (None is 0) and
    whose bad input exits as :func:`refusal` says. Every nfsguard group is one, so a
    command exits the same whether run as ``nfsguard ...`` or through its own group."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            code = super().invoke(ctx)
        except Exception as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            for line in refused.lines:
                click.echo(line, err=True)
            code = refused.code
        ctx.exit(ExitCode.OK if code is None else int(code))
