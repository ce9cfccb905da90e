"""requirements/image.lock, what the image installs (hack/image.sh, the Dockerfile), is
current with pyproject.toml: every runtime dependency pinned to a version its specifier
accepts, every pin carrying sha256 hashes, no dev-only package. hack/image-lock.sh
rewrites it; the image build's `pip install --require-hashes` + `pip check` hold the
rest (a dependency of a dependency missing from the lock fails the build)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[3]
LOCK = REPO / "requirements" / "image.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def pins() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes), from the pip-compile format (continuation lines)."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = canonicalize_name(m.group(1))
            out[current] = (m.group(2), [])
        elif line.strip().startswith("--hash=sha256:") and current:
            out[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif line and not line.startswith((" ", "#")):
            current = ""
    return out


def project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return data


def test_every_runtime_dependency_is_pinned_within_its_specifier() -> None:
    locked = pins()
    deps = [Requirement(r) for r in project()["dependencies"]]  # type: ignore[attr-defined]
    problems = []
    for req in deps:
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{req} but the lock pins {locked[name][0]}")
    assert not problems, "; ".join(problems) + ": run hack/image-lock.sh"


def test_every_pin_is_exact_and_hashed() -> None:
    locked = pins()
    assert len(locked) >= 11
    for name, (version, hashes) in locked.items():
        assert hashes, f"{name}=={version} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_no_test_tool_and_no_local_index_is_in_the_lock() -> None:
    """Resolved from [project.dependencies] alone: the checkers of the dev extra stay out
    (requests may be in: the kubernetes client needs it at run time)."""
    locked = pins()
    assert not {"pytest", "ruff", "mypy", "hypothesis", "import-linter"} & set(locked)
    text = LOCK.read_text()
    assert "--find-links" not in text and "--index-url" not in text
