"""Fixtures for the node suite: one real single-node cluster for the whole session.

Without root, containerd/runc/CNI, the node binaries or the image tools, the suite is
skipped with one line saying how to get them; under CI=true that is an error instead,
never a skip (the e2e and image suites' convention).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.images import BuiltImage, build_image
from tests.image.images import prerequisites as image_prerequisites
from tests.node.cluster import ENABLE_HINT, NodeCluster, node_deps, prerequisites
from tests.optional_suite import OptionalSuite

NODE_DIR = Path(__file__).resolve().parent
SUITE = OptionalSuite(
    "node", NODE_DIR, prerequisites() or image_prerequisites(), ENABLE_HINT, marker="node"
)


def pytest_configure(config: pytest.Config) -> None:
    SUITE.register(config)


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config) -> list[str]:
    """Append a line to the terminal summary."""
    return SUITE.report_lines(pytestconfig)


@pytest.fixture(scope="session")
def node_image(report: list[str]) -> BuiltImage:
    """The project's image (hack/image.sh, cached by content)."""
    SUITE.require()
    try:
        return build_image()
    except (RuntimeError, OSError) as e:
        pytest.fail(f"node: image: {e}")


@pytest.fixture(scope="session")
def node(
    node_image: BuiltImage, report: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeCluster]:
    """The node, Ready, with the project's image imported; everything removed afterwards,
    and the removal checked (a leftover is an error of the session, not a note)."""
    try:
        deps = node_deps()
    except (RuntimeError, OSError) as e:
        pytest.fail(f"node: {e}")
    cluster = NodeCluster(deps, tmp_path_factory.mktemp("node"), images=[node_image.archive])
    cluster.start()
    t = cluster.timings
    report.append(
        f"node: Ready in {t['start']:.1f} s (apiserver {t['apiserver']:.1f}, controllers "
        f"{t['controllers']:.1f}, containerd+images {t['containerd']:.1f}, node Ready "
        f"{t['node-ready']:.1f}, kube-proxy {t['kube-proxy']:.1f})"
    )
    try:
        yield cluster
    finally:
        problems = cluster.stop()
        left = cluster.leftovers()
        report.append(f"node: teardown {'complete' if not left else 'INCOMPLETE'}")
        assert not left, f"the node left behind: {left} ({problems})"
