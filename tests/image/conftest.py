"""Fixtures for the image suite: the image hack/image.sh builds, run with podman.

Without root/podman/mmdebstrap the suite is skipped with one line saying how to get them;
under CI=true that is an error instead, never a skip (the e2e suite's convention).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.image.images import ENABLE_HINT, BuiltImage, build_image, prerequisites

IMAGE_DIR = Path(__file__).resolve().parent
_WHY = prerequisites()
_NOT_RUN = pytest.StashKey[int]()
#: Lines for the terminal summary (image size, stop time): reported, never asserted on.
REPORT = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[REPORT] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if IMAGE_DIR in Path(str(i.path)).resolve().parents]
    if mine and _WHY and os.environ.get("CI") != "true":
        items[:] = [i for i in items if i not in mine]
        config.hook.pytest_deselected(items=mine)
        config.stash[_NOT_RUN] = len(mine)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    n = config.stash.get(_NOT_RUN, 0)
    if n:
        terminalreporter.write_line(
            f"SKIPPED image suite ({n} tests, {_WHY}): {ENABLE_HINT}", yellow=True
        )
    for line in config.stash.get(REPORT, []):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.stash.get(_NOT_RUN, 0) and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture(scope="session")
def built_image(pytestconfig: pytest.Config) -> BuiltImage:
    if _WHY:
        pytest.fail(f"image: cannot build under CI=true ({_WHY}): {ENABLE_HINT}")
    try:
        image = build_image()
    except (RuntimeError, OSError) as e:
        pytest.fail(f"image: {e}")
    pytestconfig.stash[REPORT].append(
        f"image: {image.ref} {image.size / 2**20:.0f} MiB (podman image size, uncompressed)"
    )
    return image


@pytest.fixture
def report(pytestconfig: pytest.Config) -> list[str]:
    """Append a line to the terminal summary."""
    return pytestconfig.stash[REPORT]
