"""Shared builders for tests: policies and engines loaded as the composition roots
load them (webhook.config.load with the packaged built-in profiles and schemas), and
the nfsguard command run in-process."""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings

from webhook.api.policy import Policy
from webhook.cli.main import cli
from webhook.config.lint import LintResult, lint
from webhook.config.load import LoadResult, load
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.server.policy_state import AcceptedPolicies
from webhook.server.policy_store import PolicyStore

Sources = Iterable[tuple[str, str]]


def loaded(sources: Sources) -> LoadResult:
    """What ``sources`` (file name, text) load to, problems and all."""
    return load(sources, builtin_profiles=packaged.builtin_profiles(), schemas=packaged.schemas())


def load_policies(sources: Sources) -> tuple[Policy, ...]:
    """The policies of ``sources``; raises PolicyError with every error."""
    return loaded(sources).checked().policies


def engine_for(sources: Sources) -> Engine:
    """An engine for ``sources`` and the profiles in force with them; raises PolicyError."""
    result = loaded(sources).checked()
    return Engine(result.policies, result.profiles)


def linted(sources: Sources) -> LintResult:
    """``nfsguard policy lint`` of ``sources``, without the command."""
    return lint(loaded(sources))


def policy_store(
    paths: Sequence[str],
    *,
    fallback: Sequence[tuple[str, str]] = (),
    shared: AcceptedPolicies | None = None,
) -> PolicyStore:
    """A worker's policy store, built as webhook.server.runner.build_app builds it."""
    return PolicyStore(
        paths,
        builtin_profiles=packaged.builtin_profiles(),
        schemas=packaged.schemas(),
        fallback=fallback,
        shared=shared,
    )


def nfsguard(*args: str, stdin: str | bytes | None = None) -> Result:
    """``nfsguard ARGS`` in-process through click: the real command, its stdout, stderr
    and exit code. Any exception but the exit is a traceback a user would see: it fails
    here. (tests/integration runs the installed entry points as processes.)"""
    result = CliRunner().invoke(cli, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        raise AssertionError("".join(traceback.format_exception(*result.exc_info)))
    return result


def fuzzing(examples: int) -> settings:
    """Hypothesis settings for the property tests in ``make test``: ``examples`` cases,
    derandomized and without an example database, so every run (and CI) tries the same
    inputs; no deadline (the machine is shared, and a duration is never asserted)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def validation_version() -> str:
    """The harness's pinned Kubernetes release (hack/kube-version) as kubernetes-validate
    names its schemas (``1.36.0``): every strict validation in the suite uses it."""
    pinned = Path(__file__).resolve().parents[1] / "hack" / "kube-version"
    major, minor = pinned.read_text().strip().lstrip("v").split(".")[:2]
    return f"{major}.{minor}.0"
