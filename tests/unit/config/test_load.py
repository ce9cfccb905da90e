"""``webhook.config.load.load``: the one path from policy files to what is in force."""

from __future__ import annotations

import pytest

from tests.support import loaded
from webhook.config.documents import PolicyError, Severity
from webhook.files import packaged

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: site}
spec:
  version: "1"
  rules:
  - name: pin-filer
    match:
      exports: [{server: 10.20.0.0/16}]
    action: pin
"""

#: An operator profile replacing the built-in ceph-nfs, and one of its own.
PROFILES = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: ceph-nfs}
spec:
  storageClass:
    match: {provisioners: [nfs.csi.ceph.com]}
    export: {server: [parameters.server]}
---
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: site-driver}
spec:
  storageClass:
    match: {provisioners: [nfs.site.example]}
    export: {server: [parameters.server]}
"""


def test_profiles_in_force_are_the_operators_then_the_built_ins_they_do_not_replace() -> None:
    result = loaded([("a.yaml", POLICY), ("b.yaml", PROFILES)])
    assert result.problems == ()
    builtin = packaged.builtin_profiles()
    names = [p.name for p in result.profiles]
    assert names[:2] == ["ceph-nfs", "site-driver"]
    assert names[2:] == [p.name for p in builtin if p.name != "ceph-nfs"]
    assert not result.profiles[0].builtin and result.profiles[0].source == "b.yaml"
    assert [p.name for p in result.policies] == ["site"]


def test_without_operator_profiles_the_built_ins_are_in_force() -> None:
    assert loaded([("a.yaml", POLICY)]).profiles == packaged.builtin_profiles()


def test_checked_raises_every_error_and_keeps_warnings() -> None:
    broken = POLICY.replace("action: pin", "action: nope") + "---\n- a\n"
    result = loaded([("a.yaml", broken)])
    assert [p.position.line for p in result.errors] == [10, 12]
    with pytest.raises(PolicyError) as info:
        result.checked()
    assert info.value.problems == result.errors
    warned = POLICY.replace("action: pin", "action: warn\n    onExplicit: deny")
    ok = loaded([("a.yaml", warned)])
    assert ok.checked() is ok
    assert [p.severity for p in ok.problems] == [Severity.WARNING]
