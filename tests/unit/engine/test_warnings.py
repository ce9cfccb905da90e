"""Every warning the engine can produce: the advice first, the object named, under 120
characters by wording (never cut), with the longest names Kubernetes allows."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.engine import test_drivers as drivers
from tests.unit.engine.test_engine import INCIDENT_MATCH, csi_pv, engine, policy, pv, rule
from webhook.api.decision import Decision
from webhook.engine.advice import MAX_ADVICE, MAX_WARNING, shorten_name, warning
from webhook.engine.engine import Engine

LONG_NAME = ("a" * 62 + ".") * 4 + "z"  # a 253-character DNS-1123 subdomain
LONG_RULE = "r" * 63  # the longest DNS-1123 label
LONG_POLICY = "p" * 253
ADVICE = (
    "consider ",
    "add nfsvers=",
    "set nfsvers=",
    "recreate it with ",
    "ask to exempt its driver",
)


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["metadata"]["name"] = name
    return new


def with_labels(obj: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["metadata"]["labels"] = {"bound": "yes"}
    return new


def site(action: str, *, extra: str = "", spec: str = "", rule_name: str = LONG_RULE) -> Engine:
    return engine(
        policy(LONG_POLICY, rule(rule_name, action, INCIDENT_MATCH, extra), extra_spec=spec)
    )


def trident(pin: str, extra: str = "", spec: str = "") -> Engine:
    doc = drivers.policy(pin=pin, extra=extra).replace("pin-everything", LONG_RULE)
    return drivers.engine(doc.replace("spec:\n", "spec:\n" + spec, 1))


AUDIT = "  enforcement: Audit\n"
UPDATE_OLD = "update-existing"

#: (id, engine, object, how it is sent): every path of webhook/engine/verdict.py that warns.
Scenario = tuple[str, Callable[[], Engine], Callable[[str], dict[str, Any]], str]
SCENARIOS: list[Scenario] = [
    ("warn", lambda: site("warn"), lambda n: pv(name=n), "CREATE"),
    ("pin", lambda: site("pin"), lambda n: pv(name=n, mount_options=["vers=4.2"]), "CREATE"),
    (
        "pin-immutable-on-update",
        lambda: site("pin"),
        lambda n: named(csi_pv(attrs={"mountOptions": "vers=4.2"}), n),
        "UPDATE",
    ),
    (
        "unsupported-pin-warn",
        lambda: trident("4.0"),
        lambda n: named(drivers.trident_pv(["nfsvers=4.2", "hard"]), n),
        "CREATE",
    ),
    ("deny-existing", lambda: site("deny"), lambda n: pv(name=n), UPDATE_OLD),
    (
        "on-explicit-deny-existing",
        lambda: site("pin", extra="    onExplicit: deny\n"),
        lambda n: pv(name=n, mount_options=["nfsvers=4.2"]),
        UPDATE_OLD,
    ),
    (
        "unsupported-pin-deny-existing",
        lambda: trident("4.0", "    onUnsupportedPin: deny\n"),
        lambda n: named(drivers.trident_pv(["nfsvers=4.2"]), n),
        UPDATE_OLD,
    ),
    (
        "incomplete-pin-existing",
        lambda: trident("4.1"),
        lambda n: named(drivers.trident_pv(), n),
        UPDATE_OLD,
    ),
    ("audit-pin", lambda: site("pin", spec=AUDIT), lambda n: pv(name=n), "CREATE"),
    ("audit-deny", lambda: site("deny", spec=AUDIT), lambda n: pv(name=n), "CREATE"),
    (
        "audit-unsupported-deny",
        lambda: trident("4.0", "    onUnsupportedPin: deny\n", AUDIT),
        lambda n: named(drivers.trident_pv(["nfsvers=4.2"]), n),
        "CREATE",
    ),
    (
        "audit-incomplete-pin",
        lambda: trident("4.1", spec=AUDIT),
        lambda n: named(drivers.trident_pv(), n),
        "CREATE",
    ),
    (
        "audit-storage-class-pin",
        lambda: site("pin", spec=AUDIT),
        lambda n: {
            "kind": "StorageClass",
            "apiVersion": "storage.k8s.io/v1",
            "metadata": {"name": n},
            "provisioner": "nfs.csi.k8s.io",
            "parameters": {"server": "192.168.100.7", "share": "/data1/k8sdev"},
        },
        "CREATE",
    ),
]


def decide(scenario: Scenario, name: str) -> Decision:
    _, make_engine, make_obj, how = scenario
    obj = make_obj(name)
    if how == UPDATE_OLD:
        return make_engine().decide(with_labels(obj), operation="UPDATE", old_object=obj)
    return make_engine().decide(obj, operation="UPDATE" if how == "UPDATE" else "CREATE")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
@pytest.mark.parametrize("name", ["pv-a", "pvc-0b6f3c2e-9d1a-4c1e-8f3a-5b7d2e4c6a81", LONG_NAME])
def test_every_warning_fits_whole_with_the_advice_first(scenario: Scenario, name: str) -> None:
    decision = decide(scenario, name)
    assert decision.allowed, decision.message
    assert decision.warnings, (scenario[0], decision)
    for text in decision.warnings:
        assert len(text) <= MAX_WARNING < 120, text
        assert text.isprintable(), text
        assert text.startswith(ADVICE), text
        kind = "StorageClass/" if "storage-class" in scenario[0] else "PersistentVolume/"
        assert kind in text, text
        if len(name) <= 40:  # pvc-<uid>: always whole
            assert f"{kind}{name}" in text, text
        else:  # shortened around "...": its head and tail, never the advice
            shown = text.split(kind, 1)[1].split(" (nfsguard")[0]
            head, tail = shown.split("...")
            assert name.startswith(head) and name.endswith(tail) and len(head) >= 6, shown
        assert text.endswith(("(nfsguard)", f"(nfsguard rule {LONG_RULE})", name)), text
    # the detail the warning leaves out is in the decision message
    deciding = decision.deciding
    assert deciding is not None and f'rule "{LONG_RULE}" (policy {deciding.policy}' in (
        decision.message
    )


def test_the_rule_is_named_when_it_fits() -> None:
    decision = engine(policy("site", rule("pin-42", "pin", INCIDENT_MATCH))).decide(pv())
    assert decision.warnings == (
        "add nfsvers=4.0 to the manifest (pinned, was negotiated 4.2): "
        "PersistentVolume/pv-nfs (nfsguard rule pin-42)",
    )


def test_control_characters_never_reach_a_warning() -> None:
    text = warning("set nfsvers=4.0 in mountOptions", "PersistentVolume", "a\nb\tc", "r")
    assert text == "set nfsvers=4.0 in mountOptions: PersistentVolume/a b c (nfsguard rule r)"


def test_advice_that_could_not_fit_is_a_bug_not_a_cut_warning() -> None:
    with pytest.raises(ValueError, match="advice over"):
        warning("x" * (MAX_ADVICE + 1), "PersistentVolume", "pv", "r")


def test_shorten_name_keeps_head_and_tail() -> None:
    assert shorten_name("abc", 10) == "abc"
    short = shorten_name(LONG_NAME, 20)
    assert len(short) == 20 and short.startswith("aaaa") and short.endswith("z")
