"""`nfsguard review` (and `policy explain --fail-on`) as a CI job uses them: directories,
stdin, `-o json|yaml`, the summary line, `--fail-on`, and documents without a kind.

The real command in-process through click, on real files (tests/integration/
test_review_cli.py runs the installed binary against the served webhook).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.fixtures.samples import pv
from tests.support import nfsguard

POLICIES = Path(__file__).resolve().parents[2] / "fixtures" / "policies"

PINNED = pv("pv-pinned", mount_options=["nfsvers=4.2", "hard"])
DENIED = pv("pv-denied", server="filer9.legacy.corp", path="/vol")
WARNED = pv("pv-warned", server="10.30.0.5", path="/lab")
SAFE = pv("pv-safe", mount_options=["nfsvers=4.0"])
OTHER = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {}}


def write(path: Path, *objects: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
    return path


def review(*args: str, stdin: str | None = None) -> Any:
    return nfsguard("review", "--policy", str(POLICIES), *args, stdin=stdin)


def test_directories_are_searched_recursively_and_the_summary_is_on_stderr(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a" / "pv.yaml", PINNED, SAFE)
    write(tmp_path / "a" / "b" / "more.yml", WARNED, OTHER)
    (tmp_path / "a" / "b" / "deny.json").write_text(json.dumps(DENIED))
    (tmp_path / "a" / "README.md").write_text("not a manifest")
    (tmp_path / "a" / ".hidden").mkdir()
    write(tmp_path / "a" / ".hidden" / "x.yaml", DENIED)
    result = review(str(tmp_path / "a"))
    assert result.exit_code == 1  # one denied (the default --fail-on)
    names = [o["metadata"]["name"] for o in yaml.safe_load_all(result.stdout)]
    # path order: a/b/deny.json, a/b/more.yml, a/pv.yaml; the denied object is not admitted
    assert names == ["pv-warned", "cm", "pv-pinned", "pv-safe"]
    lines = result.stderr.splitlines()
    assert lines[-1] == "5 objects: 1 admitted unchanged, 1 mutated, 1 denied, 1 warned, 1 ignored"
    assert any(
        f"{tmp_path}/a/b/deny.json: PersistentVolume/pv-denied: denied: " in line for line in lines
    )


def test_stdin_and_files_together(tmp_path: Path) -> None:
    f = write(tmp_path / "pv.yaml", SAFE)
    result = review(str(f), "-", stdin=yaml.safe_dump(PINNED))
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1] == (
        "2 objects: 1 admitted unchanged, 1 mutated, 0 denied, 0 warned, 0 ignored"
    )
    assert any(
        line.startswith("<stdin>: PersistentVolume/pv-pinned: warning: ")
        for line in result.stderr.splitlines()
    )


def test_json_output_is_the_explanation_plus_the_admitted_object(tmp_path: Path) -> None:
    f = write(tmp_path / "pv.yaml", PINNED, DENIED, OTHER)
    result = review("-o", "json", str(f))
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    explained = json.loads(
        nfsguard("policy", "explain", "--policy", str(POLICIES), "-o", "json", str(f)).stdout
    )
    assert [{k: v for k, v in o.items() if k != "object"} for o in out] == explained
    pinned, denied, other = out
    assert pinned["outcome"] == "mutated" and pinned["source"] == str(f)
    assert pinned["object"] == jsonpatch.apply_patch(PINNED, pinned["patch"])
    assert pinned["object"]["spec"]["mountOptions"] == ["nfsvers=4.0", "hard"]
    assert (denied["outcome"], denied["allowed"], denied["object"]) == ("denied", False, None)
    assert "legacy-filers-deny" in denied["message"]
    assert (other["outcome"], other["inScope"], other["object"]) == ("ignored", False, OTHER)
    # -o yaml is the default stream of admitted objects
    assert list(yaml.safe_load_all(review("-o", "yaml", str(f)).stdout)) == [
        pinned["object"],
        OTHER,
    ]


@pytest.mark.parametrize(
    ("objects", "fail_on", "code"),
    [
        ([PINNED], (), 0),
        ([PINNED], ("mutated",), 1),
        ([SAFE, WARNED], ("mutated",), 0),
        ([SAFE, WARNED], ("warned",), 1),
        ([WARNED, PINNED], ("warned", "mutated"), 1),
        ([DENIED], ("warned",), 1),  # a denied object always fails
        ([SAFE, OTHER], ("mutated", "warned", "denied"), 0),
        ([SAFE, WARNED], ("mutated,warned",), 1),
        ([PINNED], ("denied, mutated",), 1),
    ],
)
def test_fail_on(
    tmp_path: Path, objects: list[dict[str, Any]], fail_on: tuple[str, ...], code: int
) -> None:
    f = write(tmp_path / "objs.yaml", *objects)
    args = [a for name in fail_on for a in ("--fail-on", name)]
    assert review(*args, str(f)).exit_code == code


def test_fail_on_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    f = write(tmp_path / "objs.yaml", SAFE)
    result = review("--fail-on", "mutated,changed", str(f))
    assert result.exit_code == 2
    assert "'changed' is not one of denied, mutated, warned" in result.stderr
    one = review(str(f))
    assert one.stderr.splitlines()[-1] == (
        "1 objects: 1 admitted unchanged, 0 mutated, 0 denied, 0 warned, 0 ignored"
    )


def test_explain_fails_only_when_asked(tmp_path: Path) -> None:
    f = write(tmp_path / "objs.yaml", DENIED)
    base = ("policy", "explain", "--policy", str(POLICIES))
    assert nfsguard(*base, str(f)).exit_code == 0
    assert nfsguard(*base, "--fail-on", "denied", str(f)).exit_code == 1
    g = write(tmp_path / "pinned.yaml", PINNED)
    assert nfsguard(*base, "--fail-on", "denied", str(g)).exit_code == 0
    assert nfsguard(*base, "--fail-on", "mutated", "-o", "json", str(g)).exit_code == 1


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: a}\n"
            "---\nmetadata: {name: b}\n",
            ":5: document 2: no apiVersion and no kind",
        ),
        (
            "---\n# empty\n---\nkind: PersistentVolume\nmetadata: {name: b}\n",
            ":4: document 2: no apiVersion",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, metadata: {name: x}}\n",
            ":1: document 1 items[0]: no kind",
        ),
    ],
)
def test_a_document_without_kind_or_api_version_is_bad_input(
    tmp_path: Path, text: str, where: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    good = write(tmp_path / "good.yaml", PINNED)
    for cmd in (
        ("review", "--policy", str(POLICIES)),
        ("policy", "explain", "--policy", str(POLICIES)),
    ):
        result = nfsguard(*cmd, str(good), str(f))
        assert (result.exit_code, result.stdout) == (2, ""), result.output
        assert result.stderr == (f"{f}{where} (every manifest names its apiVersion and kind)\n")


def test_paths_that_hold_nothing_are_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = review(str(tmp_path / "empty"))
    assert (result.exit_code, result.stderr) == (
        2,
        f"{tmp_path}/empty: no manifests (*.yaml, *.yml, *.json) in this directory\n",
    )
    result = review(str(tmp_path / "nope"))
    assert (result.exit_code, result.stderr) == (2, f"{tmp_path}/nope: no such file or directory\n")


def test_nothing_under_a_directory_is_skipped_unseen(tmp_path: Path) -> None:
    """A manifest entry that cannot be read stops review (exit 2, one line) instead of
    silently dropping its objects from the answer; symlinked directories are read, once."""
    root = tmp_path / "k8s"
    write(root / "a.yaml", SAFE)
    write(root / "sub" / "b.yaml", PINNED)
    (root / "sub" / "up").symlink_to("..")  # a link back up: read once, no loop
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    write(tmp_path / "elsewhere" / "c.yaml", DENIED)
    (root / ".git").mkdir()
    (root / ".git" / "gone.yaml").symlink_to("nowhere")  # hidden: skipped as before
    (root / "notes").symlink_to("nowhere")  # not a manifest name: not looked at
    result = review(str(root), "-o", "json")
    assert result.exit_code == 1  # the denied object in the linked directory was read
    names = [
        entry["object"] and entry["object"]["metadata"]["name"]
        for entry in json.loads(result.stdout)
    ]
    assert names == ["pv-safe", None, "pv-pinned"]
    assert result.stderr.splitlines()[-1].startswith("3 objects: ")
    odd_entries: list[tuple[str, Callable[[Path], None], str]] = [
        ("gone.yaml", lambda p: p.symlink_to("nowhere.yaml"), "dangling symlink to 'nowhere.yaml'"),
        ("loop.yml", lambda p: p.symlink_to(p.name), "symlink loop"),
        ("fifo.json", os.mkfifo, "not a regular file (a FIFO, socket or device): not read"),
    ]
    for name, make, why in odd_entries:
        odd = root / "sub" / name
        make(odd)
        result = review(str(root))
        assert (result.exit_code, result.stdout) == (2, ""), result.stderr
        assert result.stderr == f"{odd}: {why}\n"
        odd.unlink()
    result = review("--old", str(root), str(root / "a.yaml"))
    assert (result.exit_code, result.stderr) == (2, f"{root}: a directory, not a file\n")


_AS_NOBODY = """
import os, sys
from webhook.cli.main import main
os.setgroups([]); os.setgid(65534); os.setuid(65534)  # nobody: permissions apply
sys.argv = ["nfsguard", *sys.argv[1:]]
main()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to nobody to make EACCES as root")
def test_unreadable_files_and_directories_are_one_line_bad_input() -> None:
    """Permission denied on a manifest, a directory below the one named, the one named,
    --nodes, --old and the policy directory: one line naming it, exit 2, no traceback."""
    with tempfile.TemporaryDirectory(prefix="nfsguard-review-") as name:
        root = Path(name)
        root.chmod(0o755)
        site = root / "site.yaml"
        site.write_text((POLICIES / "10-site.yaml").read_text())
        open_pv = write(root / "k8s" / "a.yaml", SAFE)
        secret = write(root / "secret" / "b.yaml", SAFE)
        closed = root / "k8s" / "closed"
        write(closed / "c.yaml", PINNED)
        for path in (site, open_pv, secret):
            path.chmod(0o644)
        for directory in (root / "k8s", root / "secret"):
            directory.chmod(0o755)
        secret.chmod(0o600)
        closed.chmod(0o700)
        policy = ["review", "--policy", str(site)]
        cases = [
            ([*policy, str(root / "k8s")], f"{closed}: cannot list directory: Permission denied"),
            ([*policy, str(closed)], f"{closed}: cannot list directory: Permission denied"),
            ([*policy, str(secret)], f"{secret}: cannot read: Permission denied"),
            (
                [*policy, "--nodes", str(secret), str(open_pv)],
                f"{secret}: cannot read: Permission denied",
            ),
            (
                [*policy, "--old", str(secret), str(open_pv)],
                f"{secret}: cannot read: Permission denied",
            ),
            (
                ["review", "--policy", str(closed), str(open_pv)],
                f"{closed}: cannot list directory: Permission denied",
            ),
        ]
        for args, line in cases:
            proc = subprocess.run(
                [sys.executable, "-c", _AS_NOBODY, *args],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=Path(__file__).resolve().parents[3],
            )
            assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n"), args


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"apiVersion": "v1", "kind": "ConfigMap",\n "kind": "Secret"}', "<stdin>:2"),
        (
            '{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "a"},\n'
            ' "spec": {"nfs": {"server": "s", "path": "/x"},\n  "mountOptions": ["nfsvers=3"],\n'
            '  "mountOptions": ["nfsvers=4.0"]}}',
            "<stdin>:4",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: PV\n  kind: PV\n",
            "<stdin>:6",
        ),
    ],
)
def test_duplicate_keys_in_json_or_yaml_are_refused_at_their_line(text: str, where: str) -> None:
    """JSON's and YAML's last duplicate would silently win; the apiserver refuses it."""
    result = review("-", stdin=text)
    assert (result.exit_code, result.stdout) == (2, "")
    key = "kind" if "PV" in text or "Secret" in text else "mountOptions"
    assert result.stderr == f"{where}: invalid YAML: duplicate key {key!r}\n"
