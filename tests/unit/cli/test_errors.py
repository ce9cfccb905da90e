"""The one exception -> exit code map (webhook/cli/errors.py): what each kind of bad
input prints and exits with, and that a command group applies it to every command."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from webhook.admission.errors import BadRequest, UnreviewableObject
from webhook.api.policy import Position
from webhook.audit.signing import AuditKeyError
from webhook.cli.errors import ExitCode, Group, Refused, refusal
from webhook.config.documents import PolicyError, Problem
from webhook.files.sources import SourceError
from webhook.suites.suite import SuiteError


@pytest.mark.parametrize(
    ("error", "lines"),
    [
        (
            PolicyError(
                [
                    Problem(Position("b.yaml", 3, 5), "second"),
                    Problem(Position("a.yaml", 8, 1), "first"),
                ]
            ),
            ("a.yaml:8:1: first", "b.yaml:3:5: second"),
        ),
        (SuiteError(["s.yaml:9: one", "s.yaml:11: two"]), ("s.yaml:9: one", "s.yaml:11: two")),
        (SourceError("p.yaml:4: invalid YAML: x"), ("p.yaml:4: invalid YAML: x",)),
        # a message that does not start at a place says whose it is
        (SourceError("a, b: no policy files"), ("nfsguard: a, b: no policy files",)),
        (AuditKeyError("k.pem: not an Ed25519 key"), ("k.pem: not an Ed25519 key",)),
        (
            UnreviewableObject("x.yaml: PersistentVolume/pv: spec must be a mapping"),
            ("x.yaml: PersistentVolume/pv: spec must be a mapping",),
        ),
        (BadRequest("request.kind X does not match"), ("nfsguard: request.kind X does not match",)),
        (Refused("--anchor 'x': expected SEQ:HASH"), ("--anchor 'x': expected SEQ:HASH",)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_bad_input_is_exit_2_with_its_lines(error: Exception, lines: tuple[str, ...]) -> None:
    refused = refusal(error)
    assert refused is not None
    assert (refused.lines, refused.code) == (lines, ExitCode.BAD_INPUT)


def test_other_errors_are_not_bad_input() -> None:
    assert refusal(ValueError("a bug")) is None
    assert refusal(OSError("disk")) is None


@click.group(cls=Group)
def tool() -> None:
    pass


@tool.group(cls=Group)
def inner() -> None:
    pass


@tool.command()
@click.argument("code", type=int)
def returns(code: int) -> int:
    click.echo("out")
    return code


@tool.command()
def returns_nothing() -> None:
    click.echo("done")


@inner.command()
def refuses() -> None:
    click.echo("partial")
    raise Refused("first line", "second line", code=ExitCode.FINDING)


@inner.command()
def breaks() -> None:
    raise SourceError("f.yaml: cannot read: gone")


@tool.command()
def crashes() -> None:
    raise KeyError("a bug")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(tool, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_command_returns_its_exit_code() -> None:
    assert run("returns", "0") == (0, "out\n", "")
    assert run("returns", "1") == (1, "out\n", "")
    assert run("returns", "3") == (3, "out\n", "")
    assert run("returns-nothing") == (0, "done\n", "")


def test_bad_input_in_a_nested_group_exits_as_the_map_says() -> None:
    assert run("inner", "refuses") == (1, "partial\n", "first line\nsecond line\n")
    assert run("inner", "breaks") == (2, "", "f.yaml: cannot read: gone\n")


def test_a_bug_is_not_swallowed() -> None:
    result = CliRunner().invoke(tool, ["crashes"])
    assert isinstance(result.exception, KeyError)


def test_usage_errors_stay_clicks() -> None:
    code, out, err = run("returns", "x")
    assert (code, out) == (2, "")
    assert "Usage: " in err and "Invalid value for 'CODE'" in err
