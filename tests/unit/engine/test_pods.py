"""Pods and workloads: inline NFS volumes and csi-driver-nfs inline volumes, through the
real engine, for every pod-bearing kind (docs/pods-and-workloads.md).

Every patch is applied with jsonpatch; the patched object is reviewed again (no second
patch: reinvocation), read again through the engine, and its node option string handed
to the real mount.nfs in fake mode (tests/fixtures/mount_nfs.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.fixtures.samples import (
    WORKLOAD_API,
    csi_volume,
    nfs_volume,
    pod_from,
    pod_volumes,
    workload,
)
from tests.support import validation_version
from tests.unit.engine.test_drivers import mount_nfs, oracle_version
from tests.unit.engine.test_engine import INCIDENT_MATCH, SERVER, engine, policy, rule
from webhook.admission.handler import ReviewHandler, decide
from webhook.admission.offline import offline_request
from webhook.api.decision import Decision, Outcome
from webhook.api.target import InvalidObject, NFSTarget
from webhook.audit.record import decision_body
from webhook.engine.engine import Engine
from webhook.engine.explain import explain, to_json, to_text
from webhook.files import packaged
from webhook.nfs.inventory import StaticInventory, UnknownInventory
from webhook.nfs.options import is_version_option, selected_version
from webhook.nfs.scope import Node

KINDS = list(WORKLOAD_API)
NO_NODES = UnknownInventory("unit test")
PIN = engine(policy("site", rule("incident", "pin", INCIDENT_MATCH)))


def pin_engine(extra: str = "") -> Engine:
    return engine(policy("site", rule("incident", "pin", INCIDENT_MATCH, extra)))


def apply(obj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    patched: dict[str, Any] = jsonpatch.JsonPatch(list(decision.patch)).apply(copy.deepcopy(obj))
    return patched


def review(
    eng: Engine, obj: dict[str, Any], operation: str = "CREATE", old: Any = None
) -> Decision:
    """As the webhook decides it (webhook.admission.handler.decide), object untouched."""
    before = copy.deepcopy(obj)
    decision = decide(eng, offline_request(obj, operation, "uid-1", old), NO_NODES)
    assert obj == before, "the engine must not modify the object it was given"
    return decision


def volume_targets(eng: Engine, obj: dict[str, Any]) -> list[NFSTarget]:
    ev = eng.evaluate(obj)
    return [v.target for v in ev.volumes if v.target is not None]


def mount_nfs_version(target: NFSTarget, mountpoint: Path) -> str | None:
    """The version mount.nfs hands the kernel for the node option string of ``target``."""
    tried, output = mount_nfs(",".join(target.node_options()), mountpoint)
    assert "multiple version options" not in output and tried is not None, output
    return oracle_version(tried)


@pytest.fixture(scope="module")
def mountpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mnt")


# ----------------------------------------------------------- inline nfs: pin rules


@pytest.mark.parametrize("kind", KINDS)
def test_inline_nfs_under_a_pin_rule_is_denied_with_the_way_out(kind: str) -> None:
    obj = workload(kind, [nfs_volume("data")])
    d = review(PIN, obj)
    assert d.outcome is Outcome.DENIED and not d.patch
    assert d.deciding is not None and d.deciding.rule == "incident"
    msg = d.message
    assert 'volume "data"' in msg and 'rule "incident"' in msg and "onInline: deny" in msg
    assert f"{kind}/web volume data" in msg
    # the way out: a ready-to-apply PV (and PVC) with the pin, for the very export
    example = msg[msg.index("apiVersion: v1") : msg.index("Then replace")]
    pv, pvc = yaml.safe_load_all(example)
    assert pv["kind"] == "PersistentVolume" and pv["spec"]["mountOptions"] == ["nfsvers=4.0"]
    assert pv["spec"]["nfs"] == {"server": SERVER, "path": "/data1/k8sdev/hl"}
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pvc["spec"]["storageClassName"] == pv["spec"]["storageClassName"] == ""
    assert f"claimName: {pvc['metadata']['name']}" in msg
    assert d.target is not None and d.target.kind == kind and d.target.volume == "data"
    assert [v.to_dict() for v in d.volumes] == [
        {
            "name": "data",
            "outcome": "denied",
            "export": f"{SERVER}:/data1/k8sdev/hl",
            "driver": "in-tree-nfs",
            "rule": "incident",
        }
    ]


def test_the_example_names_the_pin_of_the_policy() -> None:
    eng = engine(policy("site", rule("incident", "pin", INCIDENT_MATCH), extra_spec='  pin: "3"\n'))
    d = review(eng, workload("Pod", [nfs_volume()]))
    assert "mountOptions: [nfsvers=3]" in d.message and d.outcome is Outcome.DENIED


def _way_out(message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    example = message[message.index("apiVersion: v1") : message.index("Then replace")]
    pv, pvc = yaml.safe_load_all(example)
    return pv, pvc


@pytest.mark.parametrize("kind", KINDS)
def test_the_way_out_names_the_namespace_of_the_object(kind: str) -> None:
    d = review(PIN, workload(kind, [nfs_volume("data")], namespace="shop"))
    assert "kubectl apply -n shop -f -" in d.message and "<namespace>" not in d.message
    pv, pvc = _way_out(d.message)
    assert pvc["metadata"]["namespace"] == "shop"
    assert "namespace" not in pv["metadata"]  # PVs are cluster-scoped


def test_the_request_namespace_is_used_when_the_object_names_none() -> None:
    obj = workload("Deployment", [nfs_volume("data")])
    del obj["metadata"]["namespace"]
    request = offline_request(obj, "CREATE", "uid-1", None)
    d = decide(PIN, dataclasses.replace(request, namespace="team-a"), NO_NODES)
    assert "kubectl apply -n team-a -f -" in d.message
    assert _way_out(d.message)[1]["metadata"]["namespace"] == "team-a"
    # a file that names no namespace (offline review) keeps the placeholder, and the PVC
    # then names none: kubectl -n puts it where the user says
    offline = review(PIN, obj)
    assert "kubectl apply -n <namespace> -f -" in offline.message
    assert "namespace" not in _way_out(offline.message)[1]["metadata"]


@pytest.mark.parametrize("read_only", [False, True])
def test_the_way_out_is_valid_and_nfsguard_admits_it(read_only: bool, mountpoint: Path) -> None:
    volume = nfs_volume("data")
    if read_only:
        volume["nfs"]["readOnly"] = True
    d = review(PIN, workload("StatefulSet", [volume], namespace="shop"))
    pv, pvc = _way_out(d.message)
    for doc in (pv, pvc):
        kubernetes_validate.validate(doc, validation_version(), strict=True)
    # the PV it suggests is compliant under the very rule that refused the volume
    ev = PIN.evaluate(pv)
    assert ev.outcome is Outcome.COMPLIANT and [c.rule.name for c in ev.matched] == ["incident"]
    assert ev.target is not None and mount_nfs_version(ev.target, mountpoint) == "4.0"
    claim = f"persistentVolumeClaim: {{claimName: {pvc['metadata']['name']}"
    if read_only:  # read-only stays read-only: the PV, its access mode and the claim
        assert pv["spec"]["mountOptions"] == ["nfsvers=4.0", "ro"]
        assert pv["spec"]["nfs"]["readOnly"] is True
        assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
        assert f"{claim}, readOnly: true}}" in d.message
    else:
        assert pv["spec"]["mountOptions"] == ["nfsvers=4.0"] and "readOnly" not in pv["spec"]["nfs"]
        assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert f"{claim}}}" in d.message and "readOnly" not in d.message


def test_a_read_only_that_is_not_a_boolean_is_an_invalid_object() -> None:
    volume = nfs_volume("data")
    volume["nfs"]["readOnly"] = "yes"
    with pytest.raises(InvalidObject, match=r"volumes\[0\]\.nfs\.readOnly must be a boolean"):
        PIN.evaluate(workload("Pod", [volume]))


@pytest.mark.parametrize(
    ("on_inline", "outcome"), [("warn", Outcome.WARNED), ("audit", Outcome.AUDITED)]
)
@pytest.mark.parametrize("kind", ["Pod", "Deployment", "CronJob"])
def test_on_inline_warn_and_audit_allow_unchanged(
    kind: str, on_inline: str, outcome: Outcome
) -> None:
    eng = pin_engine(f"    onInline: {on_inline}\n")
    d = review(eng, workload(kind, [nfs_volume()]))
    assert d.outcome is outcome and d.allowed and not d.patch
    assert f"onInline: {on_inline}" in d.message
    if outcome is Outcome.WARNED:
        (w,) = d.warnings
        assert len(w) < 120 and "PersistentVolume with nfsvers=4.0" in w and kind in w
    else:
        assert d.warnings == ()
    assert d.recorded


@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        ("deny", Outcome.DENIED),
        ("warn", Outcome.WARNED),
        ("audit", Outcome.AUDITED),
        ("exempt", Outcome.EXEMPT),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_other_actions_act_on_inline_nfs_as_on_pvs(
    kind: str, action: str, outcome: Outcome
) -> None:
    eng = engine(policy("site", rule("r", action, INCIDENT_MATCH)))
    d = review(eng, workload(kind, [nfs_volume()]))
    assert d.outcome is outcome and not d.patch
    if action == "deny":
        assert "PersistentVolume" in d.message and "nfsvers=4.0" in d.message
    for w in d.warnings:
        assert len(w) < 120 and w.isprintable()


def test_inline_nfs_to_another_export_is_unmatched_and_not_recorded() -> None:
    d = review(PIN, workload("Deployment", [nfs_volume(server="10.9.9.9")]))
    assert d.outcome is Outcome.UNMATCHED and d.allowed and not d.recorded


def test_provisioner_and_class_rules_do_not_reach_inline_nfs() -> None:
    eng = engine(
        policy(
            "site",
            rule("by-driver", "deny", "      provisioners: [nfs.csi.k8s.io]\n")
            + rule("by-class", "deny", "      storageClassNames: [nfs]\n"),
        )
    )
    assert review(eng, workload("Pod", [nfs_volume()])).outcome is Outcome.UNMATCHED
    # a CSI inline volume has a driver: provisioners match it (as a CSI PV's driver)
    d = review(eng, workload("Pod", [csi_volume()]))
    assert d.outcome is Outcome.DENIED and d.deciding is not None
    assert d.deciding.rule == "by-driver"
    assert "volumeAttributes.mountOptions of volume shared" in d.message


# -------------------------------------------------------------- inline csi: pinned


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", [None, "nfsvers=4.2,hard", "vers=4.1,nconnect=4", "v4,hard"])
def test_inline_csi_is_pinned_in_volume_attributes(
    kind: str, options: str | None, mountpoint: Path
) -> None:
    obj = workload(kind, [csi_volume(mount_options=options)])
    d = review(PIN, obj)
    assert d.outcome is Outcome.MUTATED, d.message
    for op in d.patch:
        assert op["path"].endswith("/csi/volumeAttributes/mountOptions"), op
    patched = apply(obj, d)
    (vol,) = pod_volumes(patched)
    written = vol["csi"]["volumeAttributes"]["mountOptions"].split(",")
    assert [o for o in written if is_version_option(o)] == ["nfsvers=4.0"]
    if options:  # every other option kept, in order
        kept = [o for o in options.split(",") if not is_version_option(o)]
        assert [o for o in written if not is_version_option(o)] == kept
    (w,) = d.warnings
    assert len(w) < 120 and f"{kind}/web volume shared" in w
    # reinvocation: the patched object is compliant, no second patch
    again = review(PIN, patched)
    assert again.outcome is Outcome.COMPLIANT and again.patch == ()
    (target,) = volume_targets(PIN, patched)
    assert [o for o in target.node_options() if selected_version(o)] == ["nfsvers=4.0"]
    assert mount_nfs_version(target, mountpoint) == "4.0"


def test_inline_csi_without_volume_attributes_gets_the_map_added(mountpoint: Path) -> None:
    volume = {"name": "bare", "csi": {"driver": "nfs.csi.k8s.io"}}
    obj = workload("Pod", [volume])
    eng = engine(policy("site", rule("all-nfs", "pin", "      provisioners: [nfs.csi.k8s.io]\n")))
    d = review(eng, obj)
    assert d.outcome is Outcome.MUTATED
    assert d.patch == (
        {"op": "add", "path": "/spec/volumes/0/csi/volumeAttributes", "value": {}},
        {
            "op": "add",
            "path": "/spec/volumes/0/csi/volumeAttributes/mountOptions",
            "value": "nfsvers=4.0",
        },
    )
    patched = apply(obj, d)
    assert review(eng, patched).outcome is Outcome.COMPLIANT


def test_inline_csi_keys_are_matched_case_insensitively() -> None:
    volume = csi_volume()
    volume["csi"]["volumeAttributes"] = {
        "Server": SERVER,
        "Share": "/data1/k8sdev",
        "MountOptions": "nfsvers=4.1",
    }
    obj = workload("Deployment", [volume])
    d = review(PIN, obj)
    assert d.outcome is Outcome.MUTATED
    assert d.patch == (
        {
            "op": "replace",
            "path": "/spec/template/spec/volumes/0/csi/volumeAttributes/MountOptions",
            "value": "nfsvers=4.0",
        },
    )


def test_a_csi_driver_without_inline_support_is_not_read() -> None:
    obj = workload("Pod", [csi_volume(driver="ebs.csi.aws.com")])
    ev = PIN.evaluate(obj)
    assert ev.outcome is Outcome.IGNORED and ev.target is None


def test_an_operator_profile_can_mark_its_driver_inline(tmp_path: Path) -> None:
    profile = (
        "apiVersion: nfsguard.io/v1alpha1\nkind: NFSDriverProfile\nmetadata: {name: site-nfs}\n"
        "spec:\n  inlineVolumes: true\n  persistentVolume:\n"
        "    match: {csiDrivers: [nfs.example.com]}\n"
        "    export:\n      server: [spec.csi.volumeAttributes.host]\n"
        "      path: [spec.csi.volumeAttributes.export]\n"
        "    mountOptions: [spec.csi.volumeAttributes.options]\n"
    )
    eng = engine(policy("site", rule("incident", "pin", INCIDENT_MATCH)), profile)
    volume = {
        "name": "v",
        "csi": {
            "driver": "nfs.example.com",
            "volumeAttributes": {"host": SERVER, "export": "/data1/k8sdev/x"},
        },
    }
    d = review(eng, workload("StatefulSet", [volume]))
    assert d.outcome is Outcome.MUTATED
    assert d.patch[-1]["path"] == "/spec/template/spec/volumes/0/csi/volumeAttributes/options"


def test_inline_volumes_needs_csi_drivers() -> None:
    from tests.support import loaded

    bad = (
        "apiVersion: nfsguard.io/v1alpha1\nkind: NFSDriverProfile\nmetadata: {name: x}\n"
        "spec:\n  inlineVolumes: true\n  storageClass:\n    match: {provisioners: [a.b]}\n"
        "    mountOptions: [mountOptions]\n"
    )
    result = loaded([("p.yaml", bad)])
    assert any("needs persistentVolume.match.csiDrivers" in p.message for p in result.problems)


# --------------------------------------------------- several volumes, one decision


def test_several_volumes_the_most_severe_wins_and_every_pin_is_patched(
    mountpoint: Path,
) -> None:
    obj = workload(
        "Deployment",
        [
            {"name": "cfg", "configMap": {"name": "cfg"}},
            csi_volume("a", mount_options="nfsvers=4.2"),
            {"name": "claim", "persistentVolumeClaim": {"claimName": "c"}},
            csi_volume("b"),
            csi_volume("safe", mount_options="nfsvers=4.0"),
        ],
    )
    d = review(PIN, obj)
    assert d.outcome is Outcome.MUTATED
    assert [op["path"] for op in d.patch] == [
        "/spec/template/spec/volumes/1/csi/volumeAttributes/mountOptions",
        "/spec/template/spec/volumes/3/csi/volumeAttributes/mountOptions",
    ]
    assert [(v.volume, v.outcome.value) for v in d.volumes] == [
        ("a", "mutated"),
        ("b", "mutated"),
        ("safe", "compliant"),
    ]
    assert len(d.warnings) == 2
    patched = apply(obj, d)
    assert review(PIN, patched).patch == ()
    for target in volume_targets(PIN, patched):
        assert mount_nfs_version(target, mountpoint) == "4.0"


def test_mixed_nfs_and_csi_denied_when_one_volume_is_denied() -> None:
    obj = workload("Pod", [csi_volume("ok"), nfs_volume("inline")])
    d = review(PIN, obj)
    assert d.outcome is Outcome.DENIED and d.patch == ()
    assert d.target is not None and d.target.volume == "inline"
    # no "pinned" warning for a volume the denial leaves unpatched
    assert not any("pinned" in w for w in d.warnings)
    assert [v.outcome for v in d.volumes] == [Outcome.MUTATED, Outcome.DENIED]


def test_mixed_with_on_inline_warn_pins_and_warns() -> None:
    eng = pin_engine("    onInline: warn\n")
    obj = workload("Pod", [nfs_volume("inline"), csi_volume("ok")])
    d = review(eng, obj)
    assert d.outcome is Outcome.MUTATED and len(d.patch) == 1
    assert len(d.warnings) == 2
    assert "onInline: warn" in d.message and "pinned nfsvers=4.0" in d.message


def test_two_denied_volumes_are_both_named() -> None:
    d = review(PIN, workload("Job", [nfs_volume("one"), nfs_volume("two", path="/data1/k8sdev/x")]))
    assert d.outcome is Outcome.DENIED
    assert 'volume "one"' in d.message and 'volume "two"' in d.message


# ---------------------------------------------------- shapes and what is not inline


@pytest.mark.parametrize(
    "obj",
    [
        workload("Pod", None),
        workload("Pod", []),
        workload("Deployment", [{"name": "cfg", "emptyDir": {}}]),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}, "spec": {}},
        workload(
            "Pod",
            [
                {
                    "name": "scratch",
                    "ephemeral": {
                        "volumeClaimTemplate": {
                            "spec": {"storageClassName": "nfs-csi", "accessModes": ["RWX"]}
                        }
                    },
                }
            ],
        ),
        workload("Pod", [{"name": "claim", "persistentVolumeClaim": {"claimName": "nfs"}}]),
    ],
    ids=[
        "no-volumes",
        "empty-volumes",
        "other-volumes",
        "no-spec",
        "empty-workload-spec",
        "cronjob-without-job-template",
        "generic-ephemeral",
        "pvc",
    ],
)
def test_pods_without_inline_nfs_volumes_are_ignored(obj: dict[str, Any]) -> None:
    ev = PIN.evaluate(obj)
    assert ev.outcome is Outcome.IGNORED and ev.target is None and not ev.patch
    assert "no inline NFS volume" in ev.reason


def test_init_containers_and_their_mounts_are_irrelevant() -> None:
    obj = workload("Pod", [nfs_volume()])
    obj["spec"]["initContainers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/d"}]
    plain = workload("Pod", [nfs_volume()])
    assert review(PIN, obj).message == review(PIN, plain).message


MALFORMED = [
    ({"spec": {"volumes": {"name": "x"}}}, "spec.volumes must be a list"),
    ({"spec": {"volumes": ["x"]}}, "spec.volumes[0] must be an object"),
    (
        {"spec": {"volumes": [{"name": "v", "nfs": "srv:/x"}]}},
        "spec.volumes[0].nfs must be an object",
    ),
    ({"spec": {"volumes": [{"name": "v", "nfs": {"server": 7}}]}}, "nfs.server must be a string"),
    ({"spec": {"volumes": [{"name": 3, "nfs": {"server": "s"}}]}}, "spec.volumes[0].name"),
    (
        {
            "spec": {
                "volumes": [
                    {
                        "name": "v",
                        "csi": {"driver": "nfs.csi.k8s.io", "volumeAttributes": {"server": 1}},
                    }
                ]
            }
        },
        "volumeAttributes.server must be a string",
    ),
    (
        {"spec": {"volumes": [{"name": "v", "csi": {"driver": ["x"]}}]}},
        "csi.driver must be a string",
    ),
    ({"spec": "x"}, "spec must be an object"),
    ({"metadata": {"labels": {"a": 1}}, "spec": {"volumes": [nfs_volume()]}}, "metadata.labels"),
]


@pytest.mark.parametrize(("body", "needle"), MALFORMED)
def test_malformed_pods_are_invalid_objects(body: dict[str, Any], needle: str) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **body}
    with pytest.raises(InvalidObject) as info:
        PIN.evaluate(obj)
    assert needle in str(info.value)


def test_malformed_template_is_an_invalid_object() -> None:
    obj = workload("Deployment", [nfs_volume()])
    obj["spec"]["template"]["spec"] = ["x"]
    with pytest.raises(InvalidObject, match=r"spec\.template\.spec must be an object"):
        PIN.evaluate(obj)
    obj = workload("Deployment", [nfs_volume()])
    obj["spec"]["template"]["metadata"] = {"labels": {"app": 1}}
    with pytest.raises(InvalidObject, match=r"template\.metadata\.labels"):
        PIN.evaluate(obj)


def _admission_review(obj: Any, kind: str = "Pod") -> bytes:
    group, _, version = WORKLOAD_API.get(kind, "v1").rpartition("/")
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": group, "version": version, "kind": kind},
                "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
                "namespace": "apps",
                "operation": "CREATE",
                "userInfo": {"username": "u"},
                "object": obj,
                "oldObject": None,
            },
        }
    ).encode()


@pytest.mark.parametrize(("body", "needle"), MALFORMED)
def test_the_handler_refuses_malformed_pods_in_band(body: dict[str, Any], needle: str) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **body}
    answer = ReviewHandler(lambda: PIN).handle(_admission_review(obj))
    response = answer.review["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert needle in response["status"]["message"] and "\n" not in response["status"]["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_handler_answers_each_kind(kind: str) -> None:
    answer = ReviewHandler(lambda: PIN).handle(
        _admission_review(workload(kind, [csi_volume()]), kind)
    )
    response = answer.review["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    denied = ReviewHandler(lambda: PIN).handle(
        _admission_review(workload(kind, [nfs_volume()]), kind)
    )
    assert denied.review["response"]["allowed"] is False
    assert "nfsvers=4.0" in denied.review["response"]["status"]["message"]


def test_generate_name_is_used_for_names() -> None:
    obj = workload("Pod", [nfs_volume()])
    obj["metadata"] = {"generateName": "web-7d9f-", "namespace": "apps"}
    d = review(PIN, obj)
    assert "Pod/web-7d9f-* volume data" in d.message and "name: web-7d9f-data" in d.message


def test_being_deleted_is_never_touched() -> None:
    obj = workload("Pod", [nfs_volume()])
    obj["metadata"]["deletionTimestamp"] = "2026-12-04T00:00:00Z"
    assert PIN.evaluate(obj).outcome is Outcome.IGNORED


# -------------------------------------------------- labels and node scope of pods


def test_object_selector_reads_the_pod_template_labels_and_the_object_labels() -> None:
    eng = engine(
        policy(
            "site",
            rule(
                "data-team",
                "deny",
                INCIDENT_MATCH + "      objectSelector:\n        matchLabels: {team: data}\n",
            ),
        )
    )
    on_template = workload("Deployment", [nfs_volume()], template_labels={"team": "data"})
    on_object = workload("Deployment", [nfs_volume()], labels={"team": "data"})
    other = workload("Deployment", [nfs_volume()], template_labels={"team": "web"})
    assert review(eng, on_template).outcome is Outcome.DENIED
    assert review(eng, on_object).outcome is Outcome.DENIED
    assert review(eng, other).outcome is Outcome.UNMATCHED
    # the pod a controller makes from the template carries the template's labels
    assert review(eng, pod_from(on_template)).outcome is Outcome.DENIED


EL7 = Node("old", "3.10.0-862.14.4.el7.x86_64", {"kernel": "el7", "kubernetes.io/hostname": "old"})
EL9 = Node("new", "5.14.0-362.el9.x86_64", {"kernel": "el9", "kubernetes.io/hostname": "new"})
NODES = StaticInventory([EL7, EL9])
KERNEL_RULE = engine(
    policy(
        "site",
        rule("el7-only", "deny", "      nodeKernels:\n      - family: el7\n"),
    )
)


@pytest.mark.parametrize(
    ("spec_extra", "outcome"),
    [
        ({}, Outcome.DENIED),  # every node, el7 among them
        ({"nodeName": "new"}, Outcome.UNMATCHED),
        ({"nodeName": "old"}, Outcome.DENIED),
        ({"nodeSelector": {"kernel": "el9"}}, Outcome.UNMATCHED),
        ({"nodeSelector": {"kernel": "el7"}}, Outcome.DENIED),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "kernel", "operator": "NotIn", "values": ["el7"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            Outcome.UNMATCHED,
        ),
        (
            {
                # preferred affinity does not narrow where the pod may run
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 1,
                                "preference": {
                                    "matchExpressions": [
                                        {"key": "kernel", "operator": "In", "values": ["el9"]}
                                    ]
                                },
                            }
                        ]
                    }
                }
            },
            Outcome.DENIED,
        ),
        (
            # nodeSelector AND required affinity: no node has both
            {
                "nodeSelector": {"kernel": "el9"},
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": ["old"],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                },
            },
            Outcome.UNMATCHED,
        ),
    ],
    ids=[
        "all",
        "name-new",
        "name-old",
        "selector-el9",
        "selector-el7",
        "affinity",
        "preferred",
        "and",
    ],
)
@pytest.mark.parametrize("kind", ["Pod", "DaemonSet", "CronJob"])
def test_node_kernels_read_the_pod_spec_node_scope(
    kind: str, spec_extra: dict[str, Any], outcome: Outcome
) -> None:
    obj = workload(kind, [nfs_volume()], **spec_extra)
    d = KERNEL_RULE.decide(obj, inventory=NODES)
    assert d.outcome is outcome, d.nodes


# ----------------------------------- workloads first, then the pods they create


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "Pod"])
def test_pods_from_a_pinned_template_are_compliant(kind: str) -> None:
    obj = workload(kind, [csi_volume(mount_options="nfsvers=4.2")])
    d = review(PIN, obj)
    pod = pod_from(apply(obj, d))
    again = review(PIN, pod)
    assert again.outcome is Outcome.COMPLIANT and again.patch == () and again.allowed


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("Pod", "Job")])
def test_updates_of_workloads(kind: str) -> None:
    old = workload(kind, [nfs_volume(), csi_volume(mount_options="nfsvers=4.2")])
    # the same volumes (a scale, an annotation): never denied, never rewritten
    scaled = copy.deepcopy(old)
    scaled["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    d = review(PIN, scaled, "UPDATE", old)
    assert d.allowed and d.outcome is Outcome.WARNED and d.patch == () and d.existing
    # a changed csi volume of an updatable template is pinned on UPDATE
    changed = copy.deepcopy(old)
    pod_volumes(changed)[:] = [csi_volume(mount_options="nfsvers=4.1,hard")]
    d = review(PIN, changed, "UPDATE", old)
    assert d.outcome is Outcome.MUTATED
    patched = apply(changed, d)
    assert pod_volumes(patched)[0]["csi"]["volumeAttributes"]["mountOptions"] == "nfsvers=4.0,hard"
    assert review(PIN, patched, "UPDATE", old).patch == ()
    # a new inline nfs volume is denied on UPDATE as on CREATE
    added = copy.deepcopy(old)
    pod_volumes(added)[0] = nfs_volume(path="/data1/k8sdev/other")
    assert review(PIN, added, "UPDATE", old).outcome is Outcome.DENIED


@pytest.mark.parametrize("kind", ["Pod", "Job"])
def test_pod_and_job_volumes_are_pinned_only_on_create(kind: str) -> None:
    obj = workload(kind, [csi_volume(mount_options="nfsvers=4.2")])
    changed = copy.deepcopy(obj)
    pod_volumes(changed)[0]["csi"]["volumeAttributes"]["mountOptions"] = "nfsvers=4.1"
    d = review(PIN, changed, "UPDATE", obj)
    assert d.outcome is Outcome.WARNED and d.patch == ()
    assert "cannot change after creation" in d.message


# --------------------------------------------------- explain, audit record, shapes


def test_explain_shows_every_volume() -> None:
    obj = workload("CronJob", [nfs_volume("inline"), csi_volume("csi")])
    ev = PIN.evaluate(obj)
    e = explain(ev, obj, source="cron.yaml")
    text = to_text(e)
    assert "volume inline (nfs inline): denied" in text
    assert "volume csi (csi inline): mutated" in text
    assert "no field for mount options" in text
    data = to_json(e)
    assert data["volume"] == "inline" and data["inline"] == "nfs"
    assert [v["volume"] for v in data["volumes"]] == ["inline", "csi"]
    assert data["volumes"][1]["optionPlaces"][0]["pointer"] == (
        "/spec/jobTemplate/spec/template/spec/volumes/1/csi/volumeAttributes/mountOptions"
    )
    assert data["outcome"] == "denied"


def test_the_audit_record_of_a_pod_decision_is_valid() -> None:
    obj = workload("Deployment", [csi_volume("a"), nfs_volume("b")])
    eng = pin_engine("    onInline: audit\n")
    request = offline_request(obj, "CREATE", "u-2")
    d = decide(eng, request, NO_NODES)
    body = decision_body(request, d, time="2026-12-04T00:00:00Z")
    schema = packaged.schema("audit-record")
    record = {"schema": "x", "seq": 0, "prev": "0" * 64, "hash": "0" * 64, **body}
    decision_schema = {**schema["$defs"]["decision"], "$defs": schema["$defs"]}
    jsonschema.validate(record, decision_schema)
    assert body["target"]["volume"] == "a"
    assert [v["name"] for v in body["volumes"]] == ["a", "b"]
    assert [v["outcome"] for v in body["volumes"]] == ["mutated", "audited"]


def test_on_inline_of_the_policy_and_of_the_rule() -> None:
    eng = engine(
        policy(
            "site",
            rule("incident", "pin", INCIDENT_MATCH),
            extra_spec="  onInline: warn\n",
        )
    )
    assert review(eng, workload("Pod", [nfs_volume()])).outcome is Outcome.WARNED
    eng = engine(
        policy(
            "site",
            rule("incident", "pin", INCIDENT_MATCH, "    onInline: audit\n"),
            extra_spec="  onInline: warn\n",
        )
    )
    assert review(eng, workload("Pod", [nfs_volume()])).outcome is Outcome.AUDITED


def test_on_inline_on_a_rule_that_does_not_pin_is_a_lint_warning() -> None:
    from tests.support import loaded

    text = policy("site", rule("r", "deny", INCIDENT_MATCH, "    onInline: warn\n"))
    problems = loaded([("p.yaml", text)]).problems
    (p,) = [p for p in problems if p.code == "unused-on-inline"]
    assert "onInline applies only to action pin" in p.message and str(p.position).startswith(
        "p.yaml:"
    )
    bad = policy("site", rule("r", "pin", INCIDENT_MATCH, "    onInline: rewrite\n"))
    assert any(p.severity.value == "error" for p in loaded([("p.yaml", bad)]).problems)


# ------------------------------------------- shapes nobody wrote down, generated


_JUNK: list[Any] = [None, 0, 1.5, True, "", "x", [], ["a"], {}, {"k": 1}]


def _random_volume(rnd: Any, i: int, junk: float) -> Any:
    """A volume entry of any shape: plausible, or (at rate ``junk``) wrong at one level."""

    def pick(good: list[Any]) -> Any:
        return rnd.choice(_JUNK) if rnd.random() < junk else rnd.choice(good)

    if rnd.random() < junk:
        return rnd.choice(_JUNK)
    vol: dict[str, Any] = {"name": pick([f"v{i}"])}
    source = rnd.choice(["nfs", "csi", "csi", "pvc", "ephemeral", "none"])
    if source == "nfs":
        nfs = {"server": pick([SERVER, "10.0.0.1", ""]), "path": pick(["/data1/k8sdev/a", "/"])}
        vol["nfs"] = nfs if rnd.random() >= junk else rnd.choice(_JUNK)
    elif source == "csi":
        attrs: dict[str, Any] = {
            rnd.choice(["server", "Server"]): pick([SERVER, "10.0.0.1"]),
            "share": pick(["/data1/k8sdev/a", "/data1/k8sdev", "/data1"]),
        }
        if rnd.random() < 0.6:
            attrs[rnd.choice(["mountOptions", "MOUNTOPTIONS"])] = pick(
                [
                    "",
                    "nfsvers=4.2",
                    "vers=4.1,hard",
                    "hard,v4",
                    "nfsvers=4.0",
                    "nfsvers=4.1,vers=4.2",
                ]
            )
        csi: dict[str, Any] = {
            "driver": pick(["nfs.csi.k8s.io", "nfs.csi.k8s.io", "ebs.csi.aws.com", ""])
        }
        if rnd.random() < 0.8:
            csi["volumeAttributes"] = attrs if rnd.random() >= junk else rnd.choice(_JUNK)
        vol["csi"] = csi if rnd.random() >= junk else rnd.choice(_JUNK)
    elif source == "pvc":
        vol["persistentVolumeClaim"] = {"claimName": "c"}
    elif source == "ephemeral":
        vol["ephemeral"] = {"volumeClaimTemplate": {"spec": {"storageClassName": "nfs"}}}
    return vol


def test_generated_shapes_are_answered_in_band_and_patches_apply() -> None:
    """Thousands of generated Pods and workloads: every one is decided or refused as an
    InvalidObject (a 400 in band), never another exception; every patch applies with
    jsonpatch, and the patched object, reviewed again, needs no further patch."""
    import random

    rnd = random.Random(20261204)
    eng = engine(
        policy(
            "site",
            rule("incident", "pin", INCIDENT_MATCH, "    onInline: warn\n")
            + rule("others", "warn", "      exports: [{server: 10.0.0.1}]\n"),
        )
    )
    seen: dict[str, int] = {}
    pinned = 0
    for n in range(3000):
        kind = rnd.choice(KINDS)
        junk = rnd.choice([0.0, 0.0, 0.03, 0.1])
        volumes: Any = [_random_volume(rnd, i, junk) for i in range(rnd.randint(0, 5))]
        if rnd.random() < 0.03:
            volumes = rnd.choice(_JUNK)
        obj = workload(kind, [], name=f"w{n}")
        pod_volumes(obj)  # the builder's shape, then the generated volumes in place
        spec = obj["spec"] if kind == "Pod" else None
        if kind == "CronJob":
            spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind != "Pod":
            spec = obj["spec"]["template"]["spec"]
        assert spec is not None
        spec["volumes"] = volumes
        try:
            d = eng.decide(obj)
        except InvalidObject:
            seen["invalid"] = seen.get("invalid", 0) + 1
            continue
        seen[d.outcome.value] = seen.get(d.outcome.value, 0) + 1
        if d.patch:
            patched = apply(obj, d)
            again = eng.decide(patched)
            assert again.patch == (), (obj, d.patch, again)
            for before, after in zip(
                eng.evaluate(obj).volumes, eng.evaluate(patched).volumes, strict=True
            ):
                if before.outcome is Outcome.MUTATED:  # the node mounts exactly the pin
                    assert after.target is not None and after.outcome is Outcome.COMPLIANT
                    versions = [o for o in after.target.node_options() if selected_version(o)]
                    assert versions == ["nfsvers=4.0"], (patched, after.target)
                    pinned += 1
    assert pinned > 100, (pinned, seen)
    # the generator reached every kind of answer
    assert {"invalid", "mutated", "warned", "ignored", "compliant"} <= set(seen), seen
