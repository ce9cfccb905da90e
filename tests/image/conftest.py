"""Fixtures for the image suite: the image hack/image.sh builds, run with podman.

Without root/podman/mmdebstrap the suite is skipped with one line saying how to get them;
under CI=true that is an error instead, never a skip (the e2e suite's convention).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image.images import ENABLE_HINT, BuiltImage, build_image, prerequisites
from tests.optional_suite import OptionalSuite

IMAGE_DIR = Path(__file__).resolve().parent
SUITE = OptionalSuite("image", IMAGE_DIR, prerequisites(), ENABLE_HINT)


def pytest_configure(config: pytest.Config) -> None:
    SUITE.register(config)


@pytest.fixture(scope="session")
def built_image(pytestconfig: pytest.Config) -> BuiltImage:
    SUITE.require()
    try:
        image = build_image()
    except (RuntimeError, OSError) as e:
        pytest.fail(f"image: {e}")
    SUITE.report_lines(pytestconfig).append(
        f"image: {image.ref} {image.size / 2**20:.0f} MiB (podman image size, uncompressed)"
    )
    return image


@pytest.fixture
def report(pytestconfig: pytest.Config) -> list[str]:
    """Append a line to the terminal summary."""
    return SUITE.report_lines(pytestconfig)
