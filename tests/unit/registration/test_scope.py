"""The generated matchConditions, as text: every driver name the profiles and rules give
appears, globs become anchored RE2 regexes, and nothing unguarded is read. (What the
apiserver does with them is tests/e2e/test_blast_radius.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from webhook.cli.main import cli
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.nfs.patterns import NamePattern
from webhook.registration.configuration import (
    MANAGED_BY,
    Endpoint,
    WebhookSettings,
    webhook_configuration,
)
from webhook.registration.scope import (
    MAX_MATCH_CONDITIONS,
    Scope,
    cel_string,
    match_conditions,
    re2_of,
)

RULE_POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata:
  name: p
spec:
  version: "1"
  pin: "4.0"
  rules:
  - name: named
    match:
      provisioners: [{names}]
    action: warn
"""


def engine(names: str = "custom.example.com") -> Engine:
    loaded = load(
        [("p.yaml", RULE_POLICY.format(names=names))],
        builtin_profiles=packaged.builtin_profiles(),
        schemas=packaged.schemas(),
    ).checked()
    return Engine(loaded.policies, loaded.profiles)


def scope_expression(eng: Engine) -> str:
    (cond,) = [c for c in match_conditions(Scope.of(eng)) if c["name"] == "nfs-in-scope"]
    return cond["expression"]


def test_every_profile_driver_and_rule_driver_is_named() -> None:
    eng = engine()
    expr = scope_expression(eng)
    for profile in eng.profiles:
        for pattern in profile.driver_names():
            text = cel_string(pattern.text) if pattern.glob is None else cel_string(re2_of(pattern))
            assert text in expr, pattern.text
    assert "'custom.example.com'" in expr
    assert "ebs.csi.aws.com" not in expr


def test_a_rule_naming_a_profile_driver_adds_no_generic_reading() -> None:
    # efs.csi.aws.com is claimed by its profile: the rule brings nothing else into scope.
    assert scope_expression(engine("efs.csi.aws.com")) == scope_expression(engine("x.y")).replace(
        " || object.spec.csi.driver == 'x.y'", ""
    ).replace(" || object.provisioner == 'x.y'", "")


def test_globs_become_anchored_re2() -> None:
    glob = NamePattern.parse("*.nfs.csi.ceph.com")
    regex = re2_of(glob)
    assert regex.startswith("^") and regex.endswith("$") and r"\Z" not in regex
    assert re.match(regex, "rook-ceph.nfs.csi.ceph.com")
    assert not re.match(regex, "rook-ceph.nfs.csi.ceph.com.evil")
    assert re2_of(NamePattern.parse("a.b")) == r"^a\.b$"


def test_cel_strings_escape_quotes_and_backslashes() -> None:
    assert cel_string("it's") == r"'it\'s'"
    assert cel_string("a\\.b") == r"'a\\.b'"


def test_cel_strings_escape_control_characters() -> None:
    # A raw line break ends a single-quoted CEL literal: the apiserver refuses the
    # expression (422 on create). Every control character is written as an escape.
    assert cel_string("a\nb") == r"'a\nb'"
    assert cel_string("\r\t\x01\x7f") == r"'\r\t\x01\x7f'"
    assert cel_string("caf\u00e9") == "'caf\u00e9'"  # printable text stays as it is


def test_conditions_are_few_and_guard_what_they_read() -> None:
    conds = match_conditions(Scope.of(engine()))
    assert len(conds) <= MAX_MATCH_CONDITIONS
    names = [c["name"] for c in conds]
    assert names == ["not-being-deleted", "not-a-bind-or-finalizer-update", "nfs-in-scope"]
    expr = scope_expression(engine())
    # every attribute map is tested with has() before it is iterated
    for attrs in ("object.spec.csi.volumeAttributes", "object.parameters"):
        assert expr.count(f"{attrs}.exists(") == expr.count(f"has({attrs}) && {attrs}.exists(")


def test_the_configuration_document() -> None:
    doc = webhook_configuration(
        engine(),
        WebhookSettings(endpoint=Endpoint(url="https://127.0.0.1:1/mutate"), managed=True),
        ca_bundle=b"PEM",
    )
    wh, pods = doc["webhooks"]
    assert wh["clientConfig"] == {"url": "https://127.0.0.1:1/mutate", "caBundle": "UEVN"}
    assert pods["clientConfig"] == wh["clientConfig"] and pods["failurePolicy"] == "Fail"
    assert doc["metadata"]["labels"][MANAGED_BY] == "nfsguard-serve"
    assert wh["failurePolicy"] == "Fail"


def test_webhook_config_command(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(RULE_POLICY.format(names="custom.example.com"))
    run = CliRunner().invoke(
        cli, ["webhook-config", "--policy", str(policy), "--failure-policy", "Ignore"]
    )
    assert run.exit_code == 0, run.output
    doc = yaml.safe_load(run.output)
    assert doc["webhooks"][0]["failurePolicy"] == "Ignore"
    assert doc["webhooks"][0]["clientConfig"]["service"]["name"] == "nfsguard"
    assert MANAGED_BY not in doc["metadata"]["labels"]  # GitOps: never taken over


@pytest.mark.parametrize(
    "args,message",
    [
        (["--url", "http://x/mutate"], "must start with https://"),
        (["--ca-bundle", "{tmp}/missing.pem"], "missing.pem"),
        (["--ca-bundle", "{tmp}/p.yaml"], "not a PEM certificate"),
    ],
)
def test_webhook_config_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(RULE_POLICY.format(names="custom.example.com"))
    argv = ["webhook-config", "--policy", str(policy)] + [a.format(tmp=tmp_path) for a in args]
    run = CliRunner().invoke(cli, argv)
    assert run.exit_code == 2
    assert message in run.output and "Traceback" not in run.output
