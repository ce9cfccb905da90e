"""A policy reload as operators see it: a content change under the same spec.version is
logged, and nfsguard_policy_info / nfsguard_decisions_total follow the policies in
force (this process's registry: the served multiprocess form is in
tests/integration/test_observability.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.support import policy_store

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: reloaded
spec:
  version: "{version}"
  rules:
  - name: {rule}
    match:
      exports: [{{server: 10.0.0.0/8}}]
    action: {action}
"""


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_reload_logs_a_change_under_the_same_version_and_updates_the_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY.format(version="1", rule="pin-ten", action="pin"))
    store = policy_store([str(path)])
    first = store.engine().policies[0]
    assert sample("nfsguard_policy_info", policy="reloaded", version="1", digest=first.digest) == 1
    labels = dict(kind="StorageClass", operation="UPDATE", policy="reloaded", rule="pin-ten")
    assert sample("nfsguard_decisions_total", outcome="mutated", **labels) == 0
    path.write_text(POLICY.format(version="1", rule="deny-ten", action="deny"))
    with caplog.at_level(logging.WARNING, logger="nfsguard.policy"):
        assert store.check() == "accepted"
    second = store.engine().policies[0]
    (warning,) = [r.getMessage() for r in caplog.records if "version-unchanged" in r.getMessage()]
    assert warning.startswith(
        f'policy reload: {path}:1:1: warning: policy "reloaded": content changed'
    )
    assert "but spec.version is still '1'" in warning
    assert sample("nfsguard_policy_info", policy="reloaded", version="1", digest=first.digest) == 0
    assert sample("nfsguard_policy_info", policy="reloaded", version="1", digest=second.digest) == 1
    deny = dict(labels, rule="deny-ten")
    assert sample("nfsguard_decisions_total", outcome="denied", **deny) == 0
    # A bumped version is a change like any other: no warning.
    caplog.clear()
    path.write_text(POLICY.format(version="2", rule="deny-ten", action="warn"))
    with caplog.at_level(logging.WARNING, logger="nfsguard.policy"):
        assert store.check() == "accepted"
    assert not [r for r in caplog.records if "version-unchanged" in r.getMessage()]
