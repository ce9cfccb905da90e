"""Hostile and broken policy input: bounded, one line at its place, never skipped.

A billion-laughs bomb, deep nesting, too many documents, bad encoding, duplicate keys
and policy files that cannot be read (dangling symlink, loop, FIFO, directory,
permission denied) each give one ``FILE:LINE:COL: message`` in ``policy lint``,
``review``, ``policy test`` and a hot reload (docs/policy-authoring.md, "Limits and
files that cannot be read"). The bomb runs in a child process under an address-space
cap, so a loader that expands it fails the test instead of the machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import nfsguard, policy_store
from webhook.config.documents import Limits, scan_documents
from webhook.files.sources import read_policy_sources

REPO = Path(__file__).resolve().parents[3]
SITE = (REPO / "tests/fixtures/policies/10-site.yaml").read_text()

#: The classic bomb: nine levels of nine aliases, 9**9 strings once expanded.
BOMB = (
    "apiVersion: nfsguard.io/v1alpha1\nkind: NFSMountPolicy\nmetadata: {name: lol}\nspec:\n"
    '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, 9))
)
#: Where the composer stops: a5, the first level past 100,000 expanded nodes.
BOMB_LINE = "10:12: aliases expand to more than 100000 nodes in one document (an alias bomb?)"

#: The child's address space: the interpreter with nfsguard imported takes ~150 MiB of
#: it; the expanded bomb would need tens of GiB.
MEMORY_CAP = 512 * 1024 * 1024


def test_the_bomb_is_small() -> None:
    assert len(BOMB.encode()) < 700
    assert BOMB.count("*a") == 72


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _nfsguard_capped(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_capped,
        cwd=REPO,
        check=False,
    )


def test_bomb_in_policy_lint_under_a_memory_cap(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    proc = _nfsguard_capped("policy", "lint", str(bomb))
    assert (proc.returncode, proc.stderr) == (1, "")
    assert proc.stdout.splitlines() == [f"{bomb}:{BOMB_LINE}", "1 error, 0 warnings"]


def test_bomb_as_policy_of_review_and_as_manifest_under_a_memory_cap(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    proc = _nfsguard_capped("review", "--policy", str(bomb), "-", stdin="kind: PersistentVolume\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"{bomb}:{BOMB_LINE}\n")
    # the same bomb as the object reviewed
    proc = _nfsguard_capped("review", "--policy", str(site), str(bomb))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"{bomb}:10: aliases expand to more than 100000 nodes in one document (an alias bomb?)\n"
    )


def test_bomb_in_policy_test_under_a_memory_cap(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "pv.yaml").write_text(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv}\n"
        "spec: {nfs: {server: 10.0.0.1, path: /x}}\n"
    )
    (tmp_path / "suite.yaml").write_text(
        "apiVersion: nfsguard.io/v1alpha1\nkind: NFSPolicyTest\nmetadata: {name: t}\n"
        "spec:\n  policies: [bomb.yaml]\n  cases:\n"
        "  - name: c\n    objectFile: pv.yaml\n    expect: {outcome: compliant}\n"
    )
    proc = _nfsguard_capped("policy", "test", str(tmp_path / "suite.yaml"))
    assert proc.returncode == 2, proc
    assert f"{tmp_path}/bomb.yaml:{BOMB_LINE}" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: " + "[" * 5000, "1:103: nested deeper than 100 levels"),
        ("a: " + "{b: " * 5000, "1:397: nested deeper than 100 levels"),
        ("a: &x [1, *x]\n", "1:11: an alias names the collection it is in"),
        ("---\n" * 1001 + "a: 1\n", "1001:1: more than 1000 YAML documents in one file"),
        (
            "v: 2026-13-45\n",
            "1:4: YAML syntax error: cannot read '2026-13-45': month must be in 1..12",
        ),
        ("? [a, b]\n: c\n", "1:3: YAML syntax error: a mapping key must be a scalar"),
        ("1: a\n'1': b\n", "2:1: duplicate key '1'"),
    ],
)
def test_each_limit_is_one_problem_at_its_place(text: str, line: str) -> None:
    _, problems = scan_documents(text, "F")
    documents, _ = scan_documents(text, "F")
    found = [str(p) for p in problems] + [str(p) for d in documents for p in d.problems]
    assert found == [f"F:{line}"]


def test_aliases_within_the_budget_still_load() -> None:
    text = "base: &b {x: 1, y: [1, 2]}\n" + "".join(f"k{i}: *b\n" for i in range(100))
    documents, problems = scan_documents(text, "F")
    assert problems == []
    assert documents[0].data["k99"] == {"x": 1, "y": [1, 2]}
    _, problems = scan_documents(text, "F") if Limits().max_alias_nodes > 500 else ([], [])
    assert problems == []


@pytest.fixture
def policy_dir() -> Iterator[Path]:
    """A directory under /tmp (not pytest's 0700 one) that an unprivileged child can read."""
    with tempfile.TemporaryDirectory(prefix="nfsguard-sources-") as name:
        root = Path(name)
        root.chmod(0o755)
        (root / "10-site.yaml").write_text(SITE)
        yield root


def test_files_that_cannot_be_read_are_problems_never_skipped(policy_dir: Path) -> None:
    (policy_dir / "20-gone.yaml").symlink_to("..data/20-gone.yaml")
    (policy_dir / "30-loop.yaml").symlink_to("30-loop.yaml")
    (policy_dir / "40-dir.yaml").mkdir()
    os.mkfifo(policy_dir / "50-fifo.yaml")  # opened, it would block the reload forever
    (policy_dir / "60-enc.yaml").write_bytes(b"a: 1\nb: \xc3\x28\n")
    (policy_dir / "70-big.yaml").write_bytes(b"#" * (4 * 1024 * 1024 + 1))
    (policy_dir / ".hidden.yaml").symlink_to("nowhere")  # hidden: a ConfigMap's own links
    result = nfsguard("policy", "lint", str(policy_dir))
    assert result.exit_code == 1
    d = policy_dir
    assert result.stdout.splitlines() == [
        f"{d}/20-gone.yaml:1:1: dangling symlink to '..data/20-gone.yaml': not a policy file",
        f"{d}/30-loop.yaml:1:1: symlink loop: not a policy file",
        f"{d}/40-dir.yaml:1:1: a directory, not a policy file",
        f"{d}/50-fifo.yaml:1:1: not a regular file (a FIFO, socket or device): not read",
        f"{d}/60-enc.yaml:2:4: not UTF-8: invalid continuation byte (byte 0xc3)",
        f"{d}/70-big.yaml:1:1: larger than 4 MiB: not read",
        "6 errors, 0 warnings",
    ]
    # review refuses to answer with a set missing a file
    review = nfsguard("review", "--policy", str(policy_dir), "-", stdin="kind: x\n")
    assert review.exit_code == 2
    assert review.stderr.splitlines()[0] == result.stdout.splitlines()[0]


def test_a_dangling_symlink_named_is_said_so(policy_dir: Path) -> None:
    (policy_dir / "gone.yaml").symlink_to("nowhere.yaml")
    result = nfsguard("policy", "lint", str(policy_dir / "gone.yaml"))
    assert (result.exit_code, result.stdout.splitlines()[0]) == (
        1,
        f"{policy_dir}/gone.yaml:1:1: dangling symlink to 'nowhere.yaml': not a policy file",
    )


_UNPRIVILEGED = """
import os, sys
from webhook.files.sources import SourceError, read_policy_sources
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # nobody: permissions apply
try:
    for name, text in read_policy_sources(sys.argv[1:]):
        print(name, type(text).__name__, text[:40] if type(text).__name__ != "str" else "")
except SourceError as exc:
    print("SourceError", exc)
"""


def _as_nobody(*paths: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _UNPRIVILEGED, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=True,
    )
    return proc.stdout.splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to nobody to make EACCES as root")
def test_permission_denied_on_a_file_and_on_a_directory(policy_dir: Path) -> None:
    secret = policy_dir / "20-secret.yaml"
    secret.write_text(SITE)
    secret.chmod(0o600)
    assert _as_nobody(policy_dir) == [
        f"{policy_dir}/10-site.yaml str ",
        f"{policy_dir}/20-secret.yaml UnreadableSource cannot read: Permission denied",
    ]
    closed = policy_dir / "closed"
    closed.mkdir(mode=0o700)
    assert _as_nobody(closed) == [f"SourceError {closed}: cannot list directory: Permission denied"]


def test_a_reload_rejects_a_file_turned_dangling_symlink_once(policy_dir: Path) -> None:
    (policy_dir / "20-more.yaml").write_text(SITE.replace("name: site", "name: more", 1))
    store = policy_store([str(policy_dir)])
    assert len(store.engine().policies) == 2
    (policy_dir / "20-more.yaml").unlink()
    (policy_dir / "20-more.yaml").symlink_to("..data/20-more.yaml")
    assert store.check() == "rejected"
    assert store.reload_status()["problems"] == [
        f"{policy_dir}/20-more.yaml:1:1: dangling symlink to '..data/20-more.yaml': "
        "not a policy file"
    ]
    assert store.check() == "unchanged"  # the same failure: reported once
    assert len(store.engine().policies) == 2  # the last good set stays
    (policy_dir / "20-more.yaml").unlink()
    (policy_dir / "20-more.yaml").write_text(BOMB)
    assert store.check() == "rejected"
    assert store.reload_status()["problems"] == [f"{policy_dir}/20-more.yaml:{BOMB_LINE}"]


def test_manifests_refuse_duplicate_keys_and_deep_json(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    pv = "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\nmetadata: {name: b}\n"
    result = nfsguard("review", "--policy", str(site), "-", stdin=pv)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "<stdin>:4: invalid YAML: duplicate key 'metadata'\n"
    deep = (
        '{"apiVersion": "v1", "kind": "PersistentVolume", "spec": '
        + "[" * 10000
        + "]" * 10000
        + "}"
    )
    result = nfsguard("review", "--policy", str(site), "-", stdin=deep)
    assert (result.exit_code, result.stderr) == (2, "<stdin>:1: nested deeper than 100 levels\n")


def test_read_policy_sources_keeps_every_file_in_order(policy_dir: Path) -> None:
    (policy_dir / "05-gone.yml").symlink_to("nowhere")
    names = [Path(n).name for n, _ in read_policy_sources([str(policy_dir)])]
    assert names == ["05-gone.yml", "10-site.yaml"]


def test_a_control_character_is_one_problem_at_its_place(tmp_path: Path) -> None:
    """PyYAML refuses control characters in two lines, by string offset; lint, review and
    a reload say it once, at its line and column (found by tests/unit/config/
    test_loader_properties.py)."""
    bad = tmp_path / "ctl.yaml"
    bad.write_text(SITE.replace("name: site-rules", "name: site\x08rules", 1))
    line = SITE[: SITE.index("name: site-rules")].count("\n") + 1
    result = nfsguard("policy", "lint", str(bad))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{bad}:{line}:13: YAML syntax error: character #x0008 is not allowed in YAML "
        "(special characters are not allowed)",
        "1 error, 0 warnings",
    ]
    pv = "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: a\x1fb\n"
    policies = tmp_path / "policies"
    policies.mkdir()
    site = policies / "10-site.yaml"
    site.write_text(SITE)
    result = nfsguard("review", "--policy", str(site), "-", stdin=pv)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "<stdin>:4: invalid YAML: character #x001f is not allowed in YAML "
        "(special characters are not allowed)\n"
    )
    store = policy_store([str(policies)])
    site.write_bytes(bad.read_bytes())
    assert store.check() == "rejected"
    assert store.reload_status()["problems"] == [result_line(site, line)]
    assert len(store.engine().policies) == 1  # the last good set stays


def result_line(path: Path, line: int) -> str:
    return (
        f"{path}:{line}:13: YAML syntax error: character #x0008 is not allowed in YAML "
        "(special characters are not allowed)"
    )
