"""The shipped knowledge base (policies/known-issues.yaml) and its test suites.

`make test` runs the policy test suites in policies/tests through the real
`nfsguard policy test`, and checks the knowledge base against the table of known
problems in docs/nfs-semantics.md: every problem is covered or explicitly left
to site policies, every rule says why and where from, exemptions win.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import engine_for, load_policies, nfsguard
from webhook.admission.handler import decide
from webhook.admission.offline import offline_request
from webhook.api.decision import Action, Outcome
from webhook.api.policy import Policy
from webhook.files.sources import read_policy_sources
from webhook.nfs.inventory import Node, StaticInventory

REPO = Path(__file__).resolve().parents[3]
KB = REPO / "policies" / "known-issues.yaml"


def knowledge_base() -> Policy:
    (policy,) = load_policies(read_policy_sources([str(KB)]))
    return policy


def test_shipped_policy_suites_pass() -> None:
    proc = nfsguard("policy", "test", str(REPO / "policies" / "tests"))
    lines = proc.stdout.splitlines()
    assert proc.exit_code == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    summary = re.fullmatch(r"(\d+) passed, 0 failed", lines[-1])
    assert summary is not None, lines[-1]
    assert int(summary.group(1)) == len(lines) - 1 >= 30
    assert all(line.startswith("PASS ") for line in lines[:-1])


def test_identity_and_defaults() -> None:
    policy = knowledge_base()
    assert policy.name == "nfsguard-known-issues"
    assert policy.pin == "4.0"
    assert policy.unknown_nodes.value == "assumeUnaffected"
    assert KB.read_text().startswith(
        "# yaml-language-server: $schema=schema/nfsmountpolicy.schema.json\n"
    )


def test_every_rule_says_why_and_where_from() -> None:
    for rule in knowledge_base().rules:
        assert len(rule.description) > 40, rule.name
        assert rule.references, rule.name
        for ref in rule.references:
            assert re.match(r"https://\S+$", ref) or ref.startswith("docs/"), ref


# Every row of "Known NFSv4.1/4.2 problems" in docs/nfs-semantics.md: its sources, and the
# rule that covers it with its action (None: a server bug without a range, left to sites).
KNOWN_PROBLEMS: list[tuple[str, str | None, Action | None]] = [
    ("https://github.com/flatcar/Flatcar/issues/1226", "flatcar-exchgid4-pnfs-ds", Action.PIN),
    (
        "https://github.com/coreos/fedora-coreos-tracker/issues/1601",
        "upstream-6-5-exchgid4-pnfs-ds",
        Action.PIN,
    ),
    (
        "https://github.com/coreos/fedora-coreos-tracker/issues/1121",
        "fedora-5-16-trunking-discovery",
        Action.WARN,
    ),
    ("https://github.com/flatcar/Flatcar/issues/711", "flatcar-5-15-32-mount-hang", Action.PIN),
    ("https://github.com/flatcar/Flatcar/issues/1565", "flatcar-6-6-read-plus", Action.WARN),
    ("https://bugzilla.redhat.com/show_bug.cgi?id=1552037", None, None),
]


@pytest.mark.parametrize(("source", "rule_name", "action"), KNOWN_PROBLEMS)
def test_each_known_problem_is_covered(
    source: str, rule_name: str | None, action: Action | None
) -> None:
    rules = {r.name: r for r in knowledge_base().rules}
    citing = [r.name for r in rules.values() if source in r.references]
    if rule_name is None:
        # the incident's server bug: no range can be shipped; a commented template is
        assert citing == []
        text = KB.read_text()
        assert "#   - " + source in text
        assert "range is unverified" in text
        return
    assert citing == [rule_name]
    rule = rules[rule_name]
    assert rule.action is action
    assert rule.match.node_kernels, "a client bug with a known range is kernel-scoped"
    assert rule.match.exports is None
    for rng in rule.match.node_kernels:
        assert rng.min is not None and rng.below is not None, rng


def test_kernel_ranges_are_the_sources_ranges() -> None:
    rules = {r.name: r for r in knowledge_base().rules}

    def ranges(name: str) -> list[tuple[str | None, str | None, str | None]]:
        return [(k.family, k.min, k.below) for k in rules[name].match.node_kernels or ()]

    assert ranges("flatcar-exchgid4-pnfs-ds") == [("flatcar", "5.15.136", "5.15.137")]
    assert ranges("upstream-6-5-exchgid4-pnfs-ds") == [(None, "6.5.7", "6.6.0-rc7")]
    assert ranges("flatcar-5-15-32-mount-hang") == [("flatcar", "5.15.32", "5.15.33")]
    assert ranges("fedora-5-16-trunking-discovery") == [
        (f, "5.16", "5.17") for f in ("fc34", "fc35", "fc36")
    ]
    assert ranges("flatcar-6-6-read-plus") == [("flatcar", "6.6", "6.7")]
    for name in ("flatcar-5-15-32-mount-hang", "flatcar-6-6-read-plus"):
        assert "unverified" in rules[name].description


def pv(server: str, path: str = "/share", options: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv"},
        "spec": {"mountOptions": list(options), "nfs": {"server": server, "path": path}},
    }


DENY_ALL = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: zz-deny-everything
spec:
  version: "1"
  rules:
  - name: deny-all
    match:
      exports: [{server: "*"}]
    action: deny
"""


@pytest.mark.parametrize(
    "server",
    [
        "acct1.file.core.windows.net",
        "acct1.privatelink.file.core.windows.net",
        "fs-0123.efs.us-east-1.amazonaws.com",
        "fs-0123.efs.cn-north-1.amazonaws.com.cn",
    ],
)
def test_exemptions_win_over_every_other_rule(server: str) -> None:
    """Against a site policy that denies everything, on a node with a pinned kernel bug."""
    engine = engine_for([*read_policy_sources([str(KB)]), ("zz.yaml", DENY_ALL)])
    nodes = StaticInventory([Node("n1", "5.15.136-flatcar")])
    obj = pv(server, options=("vers=4.1",))
    decision = decide(engine, offline_request(obj, "CREATE", "kb"), nodes)
    assert decision.outcome is Outcome.EXEMPT
    assert decision.patch == ()
    assert decision.deciding is not None and decision.deciding.action is Action.EXEMPT
    actions = {ref.action for ref in decision.matched}
    assert {Action.EXEMPT, Action.PIN, Action.DENY} <= actions
    # and a server that is not exempt is denied by the site policy
    other = decide(engine, offline_request(pv("nfs.example"), "CREATE", "kb"), nodes)
    assert other.outcome is Outcome.DENIED


def test_make_run_still_serves_the_policies_directory() -> None:
    """`make run` serves policies/: both shipped policies load and the incident is pinned."""
    engine = engine_for(read_policy_sources([str(REPO / "policies")]))
    assert [p.name for p in engine.policies] == ["nfsguard-known-issues", "site-rules"]
    obj = pv("192.168.100.7", "/data1/k8sdev/hl", ("nfsvers=4.2", "hard"))
    proc = nfsguard("review", "--policy", str(REPO / "policies"), "-", stdin=yaml.safe_dump(obj))
    assert proc.exit_code == 0, proc.stderr
    assert "mountOptions:\n  - nfsvers=4.0\n  - hard\n" in proc.stdout
    assert 'rule "incident-node003-hang" (policy site-rules' in proc.stderr
