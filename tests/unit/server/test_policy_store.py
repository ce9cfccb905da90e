"""Hot reload when the policy files fail in ways a load problem does not cover, and one
generation across the workers of a server (webhook/server/policy_store.py,
policy_state.py). Each store here stands for one worker; two stores sharing one
AcceptedPolicies directory are two workers of one server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.support import policy_store
from webhook.server.policy_state import AcceptedPolicies

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: shared
spec:
  version: "{version}"
  rules:
  - name: filer
    match:
      exports: [{{server: 10.0.0.0/8}}]
    action: {action}
"""

#: Nested far past Python's recursion limit: the YAML composer recurses per level.
DEEP = "[" * 20000 + "]" * 20000 + "\n"


def rejected_total() -> float:
    return REGISTRY.get_sample_value("nfsguard_policy_reload_total", {"result": "rejected"}) or 0


def versions(store: object) -> list[str]:
    return [p.version for p in store.engine().policies]  # type: ignore[attr-defined]


def test_a_file_the_loader_cannot_finish_is_rejected_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a RecursionError on every poll (a traceback each time), /readyz still
    "accepted", nothing counted. Now: rejected, counted and logged once, the same
    content not parsed again, the last good set kept."""
    (tmp_path / "a.yaml").write_text(POLICY.format(version="1", action="pin"))
    store = policy_store([str(tmp_path)])
    before = rejected_total()
    (tmp_path / "b.yaml").write_text(DEEP)
    with caplog.at_level(logging.ERROR, logger="nfsguard.policy"):
        assert store.check() == "rejected"
        for _ in range(3):
            assert store.check() == "unchanged"
    status = store.reload_status()
    assert status["result"] == "rejected" and status["problems"]
    assert all("\n" not in p for p in status["problems"])
    assert rejected_total() == before + 1
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    assert len([r for r in caplog.records if "still serving" in r.getMessage()]) == 1
    assert versions(store) == ["1"]


def test_a_failure_to_read_is_rejected_once_and_recovers(tmp_path: Path) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "a.yaml").write_text(POLICY.format(version="1", action="pin"))
    store = policy_store([str(policies)])
    before = rejected_total()
    (policies / "a.yaml").write_bytes(b"\xff\xfe not utf-8")  # encoding
    assert store.check() == "rejected"
    assert store.check() == "unchanged"
    (policies / "a.yaml").unlink()
    policies.rmdir()  # the directory gone
    assert store.check() == "rejected"
    assert store.check() == "unchanged"
    assert rejected_total() == before + 2
    assert versions(store) == ["1"]
    policies.mkdir()
    (policies / "a.yaml").write_text(POLICY.format(version="2", action="pin"))
    assert store.check() == "accepted"
    assert versions(store) == ["2"]


def test_flapping_between_two_bad_contents_is_said_once_each(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(POLICY.format(version="1", action="pin"))
    store = policy_store([str(path)])
    before = rejected_total()
    for _ in range(3):
        path.write_text(DEEP)
        store.check()
        path.write_text("kind: [\n")
        store.check()
    assert rejected_total() == before + 2
    assert store.reload_status()["result"] == "rejected"


def test_a_worker_started_on_broken_files_serves_the_last_accepted_set(tmp_path: Path) -> None:
    shared = AcceptedPolicies(tmp_path / "state")
    (tmp_path / "state").mkdir()
    path = tmp_path / "a.yaml"
    path.write_text(POLICY.format(version="1", action="pin"))
    first = policy_store([str(path)], shared=shared)
    assert first.reload_status()["generation"] == 0
    path.write_text(POLICY.format(version="2", action="deny"))
    assert first.check() == "accepted"
    assert first.reload_status()["generation"] == 1
    path.write_text("kind: [\n")
    assert first.check() == "rejected"
    start_time = [(str(path), POLICY.format(version="1", action="pin"))]
    restarted = policy_store([str(path)], fallback=start_time, shared=shared)
    assert versions(restarted) == ["2"]  # not the start-time v1
    status = restarted.reload_status()
    assert (status["result"], status["generation"]) == ("rejected", 1)


def test_a_worker_that_saw_only_the_broken_files_follows_its_sibling(tmp_path: Path) -> None:
    """Worker A polls the good change; the file breaks before worker B polls: B follows
    A's generation instead of keeping the older set."""
    (tmp_path / "state").mkdir()
    path = tmp_path / "a.yaml"
    path.write_text(POLICY.format(version="1", action="pin"))
    a = policy_store([str(path)], shared=AcceptedPolicies(tmp_path / "state"))
    b = policy_store([str(path)], shared=AcceptedPolicies(tmp_path / "state"))
    path.write_text(POLICY.format(version="2", action="deny"))
    assert a.check() == "accepted"
    path.write_text("kind: [\n")
    b.check()
    assert versions(b) == ["2"]
    assert b.reload_status()["generation"] == a.reload_status()["generation"] == 1
    assert b.reload_status()["result"] == "rejected"  # and it says the files are broken
    # the same good set reached by both: the same generation, not two
    path.write_text(POLICY.format(version="3", action="pin"))
    assert a.check() == b.check() == "accepted"
    assert a.reload_status()["generation"] == b.reload_status()["generation"] == 2


@pytest.mark.parametrize("kind", ["dangling symlink", "symlink loop", "bomb"])
def test_a_policy_that_vanishes_or_explodes_is_a_rejected_reload(tmp_path: Path, kind: str) -> None:
    """A file that became a dangling symlink or a loop (the knowledge base and its rules
    gone silently, before), or a billion-laughs document: rejected once, set kept."""
    (tmp_path / "a.yaml").write_text(POLICY.format(version="1", action="pin"))
    store = policy_store([str(tmp_path)])
    before = rejected_total()
    bad = tmp_path / "b.yaml"
    if kind == "dangling symlink":
        bad.symlink_to(tmp_path / "gone.yaml")
    elif kind == "symlink loop":
        bad.symlink_to(bad)
    else:
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        bad.write_text("\n".join(lines) + "\n")
    assert store.check() == "rejected"
    assert store.check() == "unchanged"
    assert rejected_total() == before + 1
    assert store.reload_status()["result"] == "rejected"
    assert versions(store) == ["1"]
