"""``nfsguard policy``: tools for policy authors (lint, test, explain).

Exit codes as everywhere: 0 success, 1 a finding (lint problem, failed test),
2 bad input (a path that does not exist, a suite that cannot be read).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from webhook.admission.handler import evaluate
from webhook.admission.offline import object_label, offline_request
from webhook.api.policy import Policy
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
from webhook.cli.errors import ExitCode, Group, Refused
from webhook.cli.review import fail_on_option, failing
from webhook.config.documents import in_file_order
from webhook.config.lint import LintResult, version_unchanged_warnings
from webhook.config.lint import lint as lint_loaded
from webhook.config.load import load
from webhook.engine.explain import explain as explain_object
from webhook.engine.explain import to_json, to_text
from webhook.files import packaged
from webhook.files.sources import read_policy_sources
from webhook.suites.load import check_suites, is_suite_text, load_cases
from webhook.suites.report import Tally, Timed, case_lines, to_junit
from webhook.suites.report import to_json as report_json
from webhook.suites.run import run_cases


@click.group(cls=Group)
def policy() -> None:
    """Lint, test and explain policies before they ship."""


@policy.command()
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@click.option(
    "--previous",
    "previous",
    multiple=True,
    metavar="DIGEST|NAME@VERSION=DIGEST|GITREF",
    help="What was in force before: a policy's digest (as /readyz, nfsguard_policy_info "
    "and audit records show it; bare or NAME= it is the one of the current spec.version), "
    "or a git ref whose files are compared. Warn when content changed but not spec.version "
    "(repeatable).",
)
@click.option(
    "--previous-ref",
    metavar="GITREF",
    help="The same as --previous GITREF (the policy files as committed there).",
)
@click.argument("paths", nargs=-1, required=True)
def lint(
    paths: tuple[str, ...], strict: bool, previous: tuple[str, ...], previous_ref: str | None
) -> ExitCode:
    """Check policies (files, or the *.yaml of directories) as the server loads them.

    Prints every problem as FILE:LINE:COL: message (warnings as
    FILE:LINE:COL: warning: message [code]; a rule's lint: {ignore: [code]}
    acknowledges one), then one summary line. Exit 0 when clean, 1 on any
    error (or warning with --strict; a file that cannot be read is an error),
    2 when a path named does not exist or a directory cannot be listed.
    """
    sources = read_policy_sources(paths)
    # Test suites (kind: NFSPolicyTest) named here are checked as `policy test` reads them.
    suite_files = [Path(name) for name, text in sources if is_suite_text(text)]
    builtin, schemas = packaged.builtin_profiles(), packaged.schemas()
    policy_sources = [(n, t) for n, t in sources if not is_suite_text(t)]
    result = lint_loaded(load(policy_sources, builtin_profiles=builtin, schemas=schemas))
    refs = [previous_ref] if previous_ref is not None else []
    before = _previous(previous, result.policies, refs)
    for ref in refs:
        before.update(_previous_at_ref(ref, policy_sources, builtin, schemas))
    if before:
        extra = version_unchanged_warnings(result.policies, before)
        problems = tuple(in_file_order([*result.problems, *extra]))
        result = LintResult(result.policies, result.profiles, problems)
    suites, suite_problems = (
        check_suites(suite_files, builtin_profiles=builtin, schemas=schemas)
        if suite_files
        else (0, [])
    )
    for problem in result.problems:
        click.echo(str(problem))
    for line in suite_problems:
        click.echo(line)
    failed = result.failed(strict=strict) or bool(suite_problems)
    if failed:
        errors, warnings = len(result.errors) + len(suite_problems), len(result.warnings)
        summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    else:
        summary = result.summary(strict=strict)
        if suites:
            summary = summary.replace(": OK", f", {suites} test suite{'s' * (suites != 1)}: OK")
    click.echo(summary)
    return ExitCode.FINDING if failed else ExitCode.OK


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _previous(
    values: Sequence[str], policies: Sequence[Policy], refs: list[str]
) -> dict[str, tuple[str, str]]:
    """``--previous`` values: ``NAME@VERSION=DIGEST``; ``NAME=DIGEST`` or a bare
    ``DIGEST`` (only with one policy loaded) are the digest recorded for the policy's
    current spec.version; anything else is a git ref (appended to ``refs``)."""
    out: dict[str, tuple[str, str]] = {}
    current = {p.name: p.version for p in policies}
    for value in values:
        target, eq, digest = value.rpartition("=")
        if not eq:
            target, digest = "", value
        if not _DIGEST.match(digest):
            if eq:
                raise Refused(
                    f"nfsguard: --previous {value!r}: expected NAME@VERSION=sha256:<64 hex>"
                )
            refs.append(value)
            continue
        name, at, version = target.partition("@")
        if not name:
            if len(current) != 1:
                raise Refused(
                    f"nfsguard: --previous {value!r}: {len(current)} policies loaded; "
                    "name one: NAME@VERSION=DIGEST"
                )
            name = next(iter(current))
        if not at:
            if name not in current:
                continue  # not loaded: nothing to compare
            version = current[name]
        out[name] = (version, digest)
    return out


def _previous_at_ref(
    ref: str, sources: Sequence[tuple[str, str]], builtin: Any, schemas: Any
) -> dict[str, tuple[str, str]]:
    """Each policy's (version, digest) in the files as committed at ``ref``; a file
    that did not exist there is new (nothing to compare)."""
    old: list[tuple[str, str]] = []
    for name, _text in sources:
        path = Path(name).resolve()
        try:
            top = subprocess.run(
                ["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Refused(f"{name}: --previous-ref: not in a git work tree ({exc})") from None
        rel = path.relative_to(Path(top).resolve()).as_posix()
        shown = subprocess.run(
            ["git", "-C", top, "show", f"{ref}:{rel}"], capture_output=True, text=True
        )
        if shown.returncode != 0:
            check = subprocess.run(
                ["git", "-C", top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                capture_output=True,
            )
            if check.returncode != 0:
                raise Refused(f"nfsguard: --previous-ref {ref!r}: not a git commit")
            continue  # the file is new at this ref
        old.append((f"{ref}:{rel}", shown.stdout))
    loaded = load(old, builtin_profiles=builtin, schemas=schemas)
    return {p.name: (p.version, p.digest) for p in loaded.policies}


@policy.command("test")
@click.option("-k", "keyword", help="Run only cases whose SUITE::CASE contains this text.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json", "junit"]),
    default="text",
    show_default=True,
    help="text lines, one JSON document, or JUnit XML (stdout).",
)
@click.option("--fail-only", is_flag=True, help="Show only failed cases (totals count all).")
@click.argument("paths", nargs=-1, required=True)
def test_suites(
    paths: tuple[str, ...], keyword: str | None, output: str, fail_only: bool
) -> ExitCode:
    """Run policy test suites (kind: NFSPolicyTest): files, or directories searched.

    Text: one PASS/FAIL line per case, a diff for a wrong golden object, and a
    final line "N passed, M failed"; -o json and -o junit print the same results
    for CI systems (docs/policy-authoring.md). Exit 0 when all pass, 1 on any
    failure, 2 when a suite (or a policy it names) cannot be read.
    """
    cases, engines = load_cases(
        paths, builtin_profiles=packaged.builtin_profiles(), schemas=packaged.schemas()
    )
    if keyword is not None:
        cases = [c for c in cases if keyword in c.id]
        if not cases:
            raise Refused(f"nfsguard: no test case matches -k {keyword!r}")
    tally = Tally()
    shown: list[Timed] = []
    results = run_cases(cases, engines)
    while True:
        started = time.perf_counter()
        result = next(results, None)
        if result is None:
            break
        tally.add(result)
        if fail_only and result.passed:
            continue
        if output == "text":
            for line in case_lines(result):
                click.echo(line)
        else:
            shown.append(Timed(result, time.perf_counter() - started))
    if output == "json":
        click.echo(json.dumps(report_json(shown, tally), indent=2))
    elif output == "junit":
        click.echo(to_junit(shown, tally), nl=False)
    else:
        click.echo(tally.summary())
    return ExitCode.FINDING if tally.failed else ExitCode.OK


@policy.command("explain")
@policy_option
@nodes_option
@operation_option
@old_option
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@fail_on_option
@click.argument("files", nargs=-1, required=True)
def explain(
    policies: tuple[str, ...],
    nodes_file: str | None,
    operation: str | None,
    old_file: str | None,
    output: str,
    fail_on: tuple[str, ...],
    files: tuple[str, ...],
) -> ExitCode:
    """Explain the decision for each object of FILES (or - for stdin).

    Shows what nfsguard reads (driver, export, option places, effective version,
    node kernels), every matching rule, the one that decides and why, and the
    resulting patch. -o json is documented in docs/policy-authoring.md. Exit 0;
    1 when --fail-on is given and an object is denied (or warned, mutated, as
    it names); 2 on bad input.
    """
    engine = load_engine(policies)
    inventory = load_inventory(nodes_file)
    olds = load_old(old_file)
    op = operation_of(operation, old_file)
    results = []
    fails = failing(fail_on, default=())
    failed = False
    for count, (name, obj) in enumerate(manifests(files), 1):
        request = offline_request(obj, op, f"explain-{count}", olds.get(object_label(obj)))
        with reviewing(name, obj):
            evaluation = evaluate(engine, request, inventory)
        failed = failed or evaluation.decision.outcome in fails
        results.append(explain_object(evaluation, obj, source=name, operation=op))
    if output == "json":
        json.dump([to_json(e) for e in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        click.echo("\n\n".join(to_text(e) for e in results))
    return ExitCode.FINDING if failed else ExitCode.OK
