"""One wording of schema errors for every kind (webhook/config/schema.py): policies,
driver profiles and policy test suites say the same thing the same way, each at the
key or value it is about."""

from __future__ import annotations

from tests.support import loaded
from webhook.config.documents import parse_documents
from webhook.config.schema import dotted, schema_problems
from webhook.files import packaged
from webhook.suites.load import WORDING as SUITE_WORDING

PROFILE = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSDriverProfile
metadata: {name: Broken_Name}
spec:
  pin: sometimes
  persistentVolume:
    match:
      csiDrivers: [x.example.com]
      inTree: "yes"
    mountOption: [spec.mountOptions]
  versions: ["4.5"]
"""


def test_profile_schema_errors_are_worded_as_policy_ones_and_name_the_profile() -> None:
    problems = [str(p) for p in loaded([("p.yaml", PROFILE)]).errors]
    prefix = 'p.yaml:{}: profile "Broken_Name": '
    assert problems == [
        prefix.format("3:18") + "metadata.name: 'Broken_Name' is not a valid DNS-1123 name "
        "(lower case letters, digits and '-')",
        # a profile's spec.pin is its own enum, not a policy's version to pin
        prefix.format("5:8") + "spec.pin: 'sometimes' is not one of: write, never",
        prefix.format("9:15") + "spec.persistentVolume.match.inTree must be true or false",
        # at the unknown key itself, with the closest allowed one
        prefix.format("10:5") + "unknown key 'mountOption' in spec.persistentVolume "
        "(did you mean 'mountOptions'?)",
        prefix.format("11:14") + "spec.versions[0]: '4.5' is not one of: 2, 3, 4.0, 4.1, 4.2",
    ]


def test_a_policy_pin_says_what_nfsguard_can_pin() -> None:
    text = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: p}
spec:
  version: "1"
  pin: "4.2"
  rules: []
"""
    (problem,) = loaded([("p.yaml", text)]).errors
    assert str(problem) == (
        "p.yaml:6:8: spec.pin: '4.2' is not a version nfsguard can pin (supported: 3, 4.0, 4.1)"
    )


def test_suite_wording_lists_allowed_keys_and_words_types() -> None:
    text = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSPolicyTest
metadata: {name: s}
spec:
  policies: [p.yaml]
  cases:
  - name: 5
    object: {kind: PersistentVolume}
    expect: {outcome: mutated}
    extra: 1
  - name: "not a name"
    object: {kind: PersistentVolume}
    expect: {outcome: mutated}
"""
    (doc,) = parse_documents(text, "s.yaml")
    messages = [str(p) for p in schema_problems(doc, packaged.schemas().suite, SUITE_WORDING)]
    assert (
        "s.yaml:7:11: spec.cases[0].name must be a string (quote it: YAML read 5 as a number)"
        in messages
    )
    assert any(
        m.startswith("s.yaml:10:5: unknown key 'extra' in spec.cases[0] (allowed: ")
        for m in messages
    )
    # a pattern that is not a Kubernetes name keeps the validator's own words
    assert any(
        m.startswith("s.yaml:11:11: spec.cases[1].name: 'not a name' does not match ")
        for m in messages
    ), messages


def test_dotted_paths() -> None:
    assert dotted(("spec", "rules", 0, "match")) == "spec.rules[0].match"
    assert dotted(()) == "document"
