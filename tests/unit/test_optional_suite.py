"""tests/optional_suite.py, the gate of the e2e, image and node suites, in a real inner
pytest session (pytester): outside CI a suite whose tools are missing is deselected with
one line; under CI=true it runs and fails, never a skip that turns CI green."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ("pytester",)
REPO = Path(__file__).resolve().parents[2]

CONFTEST = """
from pathlib import Path
from typing import Any

import pytest

from tests.optional_suite import OptionalSuite

SUITE = OptionalSuite(
    "demo", Path(__file__).resolve().parent / "demo", {missing!r}, "run make demo-deps"
)


def pytest_configure(config: pytest.Config) -> None:
    SUITE.register(config)


@pytest.fixture
def tool(pytestconfig: pytest.Config) -> str:
    SUITE.require()
    SUITE.report_lines(pytestconfig).append("demo: measured 3 things")
    return "tool"
"""


def layout(pytester: pytest.Pytester, missing: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the inner session imports tests.optional_suite
    pytester.makeconftest(CONFTEST.format(missing=missing))
    demo = pytester.mkpydir("demo")
    (demo / "test_demo.py").write_text("def test_uses(tool):\n    assert tool == 'tool'\n")
    pytester.makepyfile(test_other="def test_other():\n    assert True\n")


def test_outside_ci_a_suite_missing_its_tools_is_deselected_with_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    layout(pytester, "no demo binary", monkeypatch)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        ["*SKIPPED demo suite (1 tests, no demo binary): run make demo-deps*"]
    )
    # the suite alone: nothing collected is not a failure there
    alone = pytester.runpytest_subprocess("-p", "no:cacheprovider", "demo")
    assert alone.ret == pytest.ExitCode.OK


def test_under_ci_a_suite_missing_its_tools_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    layout(pytester, "no demo binary", monkeypatch)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*demo: cannot run under CI=true (no demo binary): run make demo-deps*"]
    )
    assert "SKIPPED demo suite" not in result.stdout.str()


def test_with_its_tools_the_suite_runs_and_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    layout(pytester, None, monkeypatch)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["demo: measured 3 things"])
