"""webhook/native on the real kube-apiserver: the compiled MutatingAdmissionPolicy and
ValidatingAdmissionPolicy against the webhook, object by object.

The corpus (tests/e2e/native_corpus.py: every option spelling, every driver shape the
compiler reads, the legacy annotation) goes through (a) the webhook alone and (b) the
native policies alone, as dry-run creates (admission runs in full, nothing is stored);
both must admit the same objects with the same option places, and deny the same ones,
wherever the rule that decides is compiled (the rest is webhook-only by design and
named by `nfsguard policy compile`). Then, with the webhook stopped, the native
policies still pin real creates, and the real mount.nfs reads what they stored.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import POLICIES, RegisterFactory, WebhookFactory
from tests.e2e.kubecluster import (
    PIN,
    PROBE_ASKS,
    Cleanup,
    probe,
    pv_model,
    sc_model,
    wait_until,
)
from tests.e2e.native_corpus import LEGACY, corpus
from tests.fixtures.mount_nfs import MOUNT_NFS, ask
from webhook.admission.handler import decide
from webhook.admission.offline import offline_request
from webhook.cli.common import load_engine
from webhook.engine.engine import Engine
from webhook.native.compiler import NativePolicies, compile_native
from webhook.nfs.inventory import UnknownInventory

Json = dict[str, Any]
REPO = POLICIES.parents[2]
NATIVE_POLICY = POLICIES / "native.yaml"

PROBE_POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: zz-registration-probe}
spec:
  version: "1"
  rules:
  - name: registration-probe
    match: {exports: [{server: 192.0.2.254}]}
    action: pin
"""

_KINDS = {
    "MutatingAdmissionPolicy": "mutating_admission_policy",
    "MutatingAdmissionPolicyBinding": "mutating_admission_policy_binding",
    "ValidatingAdmissionPolicy": "validating_admission_policy",
    "ValidatingAdmissionPolicyBinding": "validating_admission_policy_binding",
}


def _call(api: k8s.AdmissionregistrationV1Api, verb: str, doc: Json) -> None:
    kind = _KINDS[doc["kind"]]
    if verb == "create":
        getattr(api, f"create_{kind}")(doc)
    else:
        getattr(api, f"delete_{kind}")(doc["metadata"]["name"])


@contextlib.contextmanager
def installed(
    api: k8s.AdmissionregistrationV1Api, core: k8s.CoreV1Api, native: NativePolicies
) -> Iterator[None]:
    """The native policies created, and proven live by the probe PV (MAP takes effect
    about 0.6 s after creation: probed, never slept); deleted and proven gone after."""
    for doc in native.objects:
        _call(api, "create", doc)
    try:
        wait_until("the native policies to pin the probe PV", lambda: probe(core) == [PIN])
        yield
    finally:
        for doc in reversed(native.objects):
            with contextlib.suppress(k8s.ApiException):
                _call(api, "delete", doc)
        wait_until("the native policies to be gone", lambda: probe(core) == [PROBE_ASKS])


def option_places(obj: Json) -> tuple[Any, ...]:
    """Every place options live, with an empty list read as absent (the apiserver
    drops empty lists: omitempty)."""
    if obj.get("kind") == "StorageClass" or "provisioner" in obj:
        return (obj.get("mountOptions") or None,)
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    return (
        spec.get("mountOptions") or None,
        (meta.get("annotations") or {}).get(LEGACY),
        (spec.get("csi") or {}).get("volumeAttributes"),
    )


def admit(api: k8s.ApiClient, obj: Json) -> tuple[str, Any]:
    """("allowed", option places as stored) or ("denied", message), by dry-run create."""
    out: object
    try:
        if obj["kind"] == "PersistentVolume":
            out = k8s.CoreV1Api(api).create_persistent_volume(pv_model(obj), dry_run="All")
        else:
            out = k8s.StorageV1Api(api).create_storage_class(sc_model(obj), dry_run="All")
    except k8s.ApiException as e:
        assert e.status in (400, 403, 422), e.body
        return "denied", json.loads(e.body or "{}").get("message", "")
    stored = api.sanitize_for_serialization(out)  # type: ignore[no-untyped-call]
    return "allowed", option_places(stored)


def admit_all(api: k8s.ApiClient, objects: list[Json]) -> dict[str, tuple[str, Any]]:
    return {o["metadata"]["name"]: admit(api, o) for o in objects}


def webhook_only(engine: Engine, native: NativePolicies, obj: Json) -> bool:
    """Whether the rule that decides ``obj`` (the engine's trace, which the served
    webhook shares) stays webhook-only."""
    compiled = {(c.policy.name, c.rule.name) for c in native.compiled}
    d = decide(engine, offline_request(obj, "CREATE", "native"), UnknownInventory("e2e"))
    return d.deciding is not None and (d.deciding.policy, d.deciding.rule) not in compiled


def compare(
    api: k8s.ApiClient,
    admission: k8s.AdmissionregistrationV1Api,
    core: k8s.CoreV1Api,
    engine: Engine,
    native: NativePolicies,
    register_webhook: Any,
) -> tuple[int, int, int]:
    """Both paths on the whole corpus; returns (compared, pinned, denied)."""
    objects = corpus()
    with register_webhook():
        by_webhook = admit_all(api, objects)
    with installed(admission, core, native):
        by_native = admit_all(api, objects)
    compared = pinned = denied = 0
    differences = []
    for obj in objects:
        name = obj["metadata"]["name"]
        if webhook_only(engine, native, obj):
            continue
        compared += 1
        w, n = by_webhook[name], by_native[name]
        if w[0] != n[0] or (w[0] == "allowed" and w[1] != n[1]):
            differences.append(f"{name}: {option_places(obj)}\n  webhook {w}\n  native  {n}")
        denied += w[0] == "denied"
        pinned += w[0] == "allowed" and w[1] != option_places(obj)
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences[:20])
    return compared, pinned, denied


@pytest.fixture
def webhook_registration(
    start_webhook: WebhookFactory, register: RegisterFactory, tmp_path: Path
) -> Any:
    def make(policy: Path) -> Any:
        wh = start_webhook(policy)

        @contextlib.contextmanager
        def registered() -> Iterator[None]:
            r = register(wh)
            try:
                yield
            finally:
                r.unregister()

        return registered

    return make


def test_native_equals_the_webhook_on_the_test_policies(
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    webhook_registration: Any,
) -> None:
    engine = load_engine([str(NATIVE_POLICY)])
    native = compile_native(engine)
    compared, pinned, denied = compare(
        api_client,
        admissionregistration_v1,
        core_v1,
        engine,
        native,
        webhook_registration(NATIVE_POLICY),
    )
    assert compared > 1500 and pinned > 300 and denied > 100, (compared, pinned, denied)


def test_native_equals_the_webhook_on_the_shipped_policies(
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    webhook_registration: Any,
    tmp_path: Path,
) -> None:
    shipped = tmp_path / "policies"
    shipped.mkdir()
    for f in sorted((REPO / "policies").glob("*.yaml")):
        shutil.copy(f, shipped / f.name)
    (shipped / "zz-probe.yaml").write_text(PROBE_POLICY)
    engine = load_engine([str(shipped)])
    native = compile_native(engine)
    # the manifest shipped in manifests/native is this compile without the probe
    assert {c.rule.name for c in native.compiled} >= {
        "incident-node003-hang",
        "azure-files-nfs-exempt",
        "amazon-efs-exempt",
    }
    compared, pinned, denied = compare(
        api_client,
        admissionregistration_v1,
        core_v1,
        engine,
        native,
        webhook_registration(shipped),
    )
    assert compared > 1500 and pinned > 100 and denied == 0, (compared, pinned, denied)


def test_pins_hold_with_the_webhook_down_and_mount_nfs_reads_them(
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    cleanup: Cleanup,
    tmp_path: Path,
) -> None:
    engine = load_engine([str(NATIVE_POLICY)])
    native = compile_native(engine)
    wh = start_webhook(NATIVE_POLICY)
    register(wh, failure_policy="Ignore")
    wh.stop()  # the outage: Ignore lets every object through unreviewed
    wait_until(
        "the stopped webhook to let the probe through", lambda: probe(core_v1) == [PROBE_ASKS]
    )
    pinned_here = [
        o
        for o in corpus()
        if o["kind"] == "PersistentVolume"
        and o["metadata"]["name"].startswith(("nat-0-", "nat-13-", "nat-subdir-pv-gold-"))
    ]
    with installed(admissionregistration_v1, core_v1, native):
        stored = []
        for obj in pinned_here:
            d = decide(engine, offline_request(obj, "CREATE", "x"), UnknownInventory("e2e"))
            if d.outcome.value != "mutated":
                continue
            cleanup.pv(obj["metadata"]["name"])
            core_v1.create_persistent_volume(pv_model(obj))
            got = api_client.sanitize_for_serialization(  # type: ignore[no-untyped-call]
                core_v1.read_persistent_volume(obj["metadata"]["name"])
            )
            stored.append((got, d))
    assert len(stored) > 50
    asked: dict[str, str] = {}
    for got, d in stored:
        target = engine.read(got)
        assert target is not None
        after = target.effective_version()
        assert d.after is not None
        assert after.version == d.after.version and not (
            after.affected and after.version != "4.1"
        ), (got["metadata"]["name"], target.node_options())
        asked.setdefault(",".join(target.node_options()), after.version or "")
    assert MOUNT_NFS is not None, "mount.nfs missing: `make system-deps` installs nfs-common"
    for options, version in sorted(asked.items()):
        said = ask(options, tmp_path)
        assert not said.refused_multiple, (options, said.output)
        if version == "3":
            assert said.v3_path, (options, said.output)
        else:
            assert said.version == version, (options, said.output)


def _updates(stored: Json) -> Iterator[tuple[str, Json]]:
    """UPDATEs of a stored object: a label (options kept: an existing object), new
    options, the legacy annotation (in-tree PVs), a bind (claimRef: never sent)."""
    pv = stored["kind"] == "PersistentVolume"
    label = copy.deepcopy(stored)
    label["metadata"].setdefault("labels", {})["touched"] = "yes"
    yield "label", label
    opts = copy.deepcopy(stored)
    (opts["spec"] if pv else opts)["mountOptions"] = ["hard", "nfsvers=4.2"]
    yield "options", opts
    if pv and "nfs" in stored["spec"]:
        ann = copy.deepcopy(stored)
        ann["metadata"].setdefault("annotations", {})[LEGACY] = "vers=4.1"
        yield "annotation", ann
    if pv:
        bind = copy.deepcopy(stored)
        bind["spec"]["claimRef"] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": "default",
            "name": "claim",
        }
        yield "bind", bind


def replace(api: k8s.ApiClient, obj: Json) -> tuple[str, Any]:
    """admit() for an UPDATE (dry-run replace)."""
    out: object
    name = obj["metadata"]["name"]
    try:
        if obj["kind"] == "PersistentVolume":
            out = k8s.CoreV1Api(api).replace_persistent_volume(name, pv_model(obj), dry_run="All")
        else:
            out = k8s.StorageV1Api(api).replace_storage_class(name, sc_model(obj), dry_run="All")
    except k8s.ApiException as e:
        assert e.status in (400, 403, 422), e.body
        return "denied", json.loads(e.body or "{}").get("message", "")
    return "allowed", option_places(api.sanitize_for_serialization(out))  # type: ignore[no-untyped-call]


def test_native_equals_the_webhook_on_updates_of_existing_objects(
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    storage_v1: k8s.StorageV1Api,
    webhook_registration: Any,
    cleanup: Cleanup,
) -> None:
    """Objects stored before any policy (nothing registered), then updated: an update
    that keeps the options is never denied (but pinned where the field may change), one
    that asks for 4.2 is judged as new, a bind never reaches either path."""
    engine = load_engine([str(NATIVE_POLICY)])
    native = compile_native(engine)
    base = [
        o
        for o in corpus()
        if o["metadata"]["name"].startswith(("nat-0-", "nat-5-", "nat-8-", "nat-13-", "nat-subdir"))
    ]
    stored: list[Json] = []
    for obj in base:
        if obj["kind"] == "PersistentVolume":
            cleanup.pv(obj["metadata"]["name"])
            out: object = core_v1.create_persistent_volume(pv_model(obj))
        else:
            cleanup.sc(obj["metadata"]["name"])
            out = storage_v1.create_storage_class(sc_model(obj))
        got = api_client.sanitize_for_serialization(out)  # type: ignore[no-untyped-call]
        got["kind"], got["apiVersion"] = obj["kind"], obj["apiVersion"]
        stored.append(got)
    updates = [(mod, new) for s in stored for mod, new in _updates(s)]
    with webhook_registration(NATIVE_POLICY)():
        by_webhook = [replace(api_client, new) for _, new in updates]
    with installed(admissionregistration_v1, core_v1, native):
        by_native = [replace(api_client, new) for _, new in updates]
    compiled = {(c.policy.name, c.rule.name) for c in native.compiled}
    differences, compared, kinds = [], 0, set()
    olds = {s["metadata"]["name"]: s for s in stored}
    for (mod, new), w, n in zip(updates, by_webhook, by_native, strict=True):
        name = new["metadata"]["name"]
        d = decide(
            engine, offline_request(new, "UPDATE", "native", olds[name]), UnknownInventory("e2e")
        )
        if d.deciding is not None and (d.deciding.policy, d.deciding.rule) not in compiled:
            continue
        compared += 1
        kinds.add((mod, w[0], d.outcome.value, d.existing))
        if w[0] != n[0] or (w[0] == "allowed" and w[1] != n[1]):
            differences.append(f"{mod} {name}: {option_places(new)}\n  webhook {w}\n  native  {n}")
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences[:20])
    assert compared > 500, compared
    # the cases that matter were all reached
    assert ("label", "allowed", "warned", True) in kinds  # a deny kept, options unchanged
    assert ("label", "allowed", "mutated", True) in kinds  # a pin still written
    assert ("options", "denied", "denied", False) in kinds  # asking for 4.2 anew
