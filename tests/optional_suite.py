"""Suites that need what a machine may lack (kube-apiserver and etcd, podman and
mmdebstrap, a node's runtime), one implementation for the e2e, image and node conftests.

Outside CI such a suite is deselected with one line saying how to get what it needs
(a developer's laptop runs the rest); under ``CI=true`` it is collected anyway and its
first fixture fails with that line (:meth:`OptionalSuite.require`): never a skip that
turns CI green. A suite may also print report lines (sizes, timings) in the terminal
summary: reported, never asserted on.

A conftest makes one and registers it as a plugin, so its hooks are the suite's:

    SUITE = OptionalSuite("image", IMAGE_DIR, prerequisites(), ENABLE_HINT)

    def pytest_configure(config):
        SUITE.register(config)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class OptionalSuite:
    """The tests under ``directory``; ``missing`` says what this machine lacks (None:
    nothing), ``hint`` how to get it."""

    name: str
    directory: Path
    missing: str | None
    hint: str
    marker: str | None = None
    _not_run: pytest.StashKey[int] = field(default_factory=pytest.StashKey, compare=False)
    _lines: pytest.StashKey[list[str]] = field(default_factory=pytest.StashKey, compare=False)

    def register(self, config: pytest.Config) -> None:
        """Make this suite's hooks part of the session (from a conftest's pytest_configure)."""
        config.pluginmanager.register(self, f"optional-suite-{self.name}")

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[self._lines] = []

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Mark the suite's items; outside CI, deselect them when something is missing."""
        mine = [i for i in items if self.directory in Path(str(i.path)).resolve().parents]
        if self.marker is not None:
            for item in mine:
                item.add_marker(getattr(pytest.mark, self.marker))
        if mine and self.missing and os.environ.get("CI") != "true":
            items[:] = [i for i in items if i not in mine]
            config.hook.pytest_deselected(items=mine)
            config.stash[self._not_run] = len(mine)

    def pytest_terminal_summary(
        self, terminalreporter: Any, exitstatus: int, config: pytest.Config
    ) -> None:
        n = config.stash.get(self._not_run, 0)
        if n:
            terminalreporter.write_line(
                f"SKIPPED {self.name} suite ({n} tests, {self.missing}): {self.hint}",
                yellow=True,
            )
        for line in config.stash.get(self._lines, []):
            terminalreporter.write_line(line)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # Only this suite selected, and deselected for what is missing: not "no tests".
        not_run = session.config.stash.get(self._not_run, 0)
        if not_run and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK

    def require(self) -> None:
        """In the suite's first fixture: under CI=true a missing tool fails here."""
        if self.missing:
            pytest.fail(f"{self.name}: cannot run under CI=true ({self.missing}): {self.hint}")

    def report_lines(self, config: pytest.Config) -> list[str]:
        """Append a line to the terminal summary."""
        return config.stash[self._lines]
