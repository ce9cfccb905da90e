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
import ipaddress
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.conftest import POLICIES, RegisterFactory, WebhookFactory
from tests.e2e.kubecluster import (
    PIN,
    PROBE_ASKS,
    Cleanup,
    Registration,
    mwc_model,
    probe,
    pv_model,
    sc_model,
    wait_until,
    webhook_configuration_for,
)
from tests.e2e.native_corpus import LEGACY, acceptance_corpus, corpus
from tests.fixtures.mount_nfs import MOUNT_NFS, ask
from webhook.admission.handler import decide
from webhook.admission.offline import offline_request
from webhook.cli.common import load_engine
from webhook.engine.engine import Engine
from webhook.native.compiler import DENY_POLICY, NativePolicies, compile_native
from webhook.nfs.inventory import UnknownInventory
from webhook.nfs.patterns import parse_ip
from webhook.registration.scope import Scope, match_conditions

Json = dict[str, Any]
REPO = POLICIES.parents[2]
NATIVE_POLICY = POLICIES / "native.yaml"
ACCEPTANCE_POLICIES = POLICIES / "native-acceptance"
ODD_POLICY = POLICIES / "native-odd.yaml"

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


def _call(api: k8s.AdmissionregistrationV1Api, verb: str, doc: Json, **kw: Any) -> None:
    kind = _KINDS[doc["kind"]]
    if verb == "create":
        getattr(api, f"create_{kind}")(doc, **kw)
    else:
        getattr(api, f"delete_{kind}")(doc["metadata"]["name"])


@contextlib.contextmanager
def installed(
    api: k8s.AdmissionregistrationV1Api,
    core: k8s.CoreV1Api,
    native: NativePolicies,
    denied: Json | None = None,
) -> Iterator[None]:
    """The native policies created, and proven live: the MAP by the probe PV, the VAP
    (which goes live on its own, sometimes seconds later under load) by ``denied``, an
    object it refuses (each takes effect about 0.6 s after creation: probed, never
    slept); deleted and proven gone after."""
    for doc in native.objects:
        _call(api, "create", doc)

    def refused() -> bool:
        return denied is not None and admit(core.api_client, denied)[0] == "denied"

    try:
        wait_until("the native policies to pin the probe PV", lambda: probe(core) == [PIN])
        if denied is not None:
            wait_until("the native deny policy to refuse its witness", refused)
        yield
    finally:
        for doc in reversed(native.objects):
            with contextlib.suppress(k8s.ApiException):
                _call(api, "delete", doc)
        wait_until("the native policies to be gone", lambda: probe(core) == [PROBE_ASKS])
        wait_until("the native deny policy to be gone", lambda: not refused())


def opted_out(obj: Json) -> bool:
    """Labelled with the opt-out (``nfsguard.io/skip: "true"``): sent to neither path."""
    return (obj["metadata"].get("labels") or {}).get("nfsguard.io/skip") == "true"


def deny_witness(engine: Engine, native: NativePolicies, objects: list[Json]) -> Json | None:
    """A PV of ``objects`` that a compiled rule denies, renamed so it never meets a stored
    one (proves the VAP live), or None when nothing is compiled to deny."""
    if not any(o["kind"] == "ValidatingAdmissionPolicy" for o in native.objects):
        return None
    compiled = {(c.policy.name, c.rule.name) for c in native.compiled}
    for obj in objects:
        d = decide(engine, offline_request(obj, "CREATE", "native"), UnknownInventory("e2e"))
        if (
            obj["kind"] == "PersistentVolume"
            and d.outcome.value == "denied"
            and d.deciding is not None
            and (d.deciding.policy, d.deciding.rule) in compiled
            and not webhook_only_driver(engine, native, obj)
            and not text_left_to_the_webhook(engine, obj)
            and not opted_out(obj)
        ):
            witness = copy.deepcopy(obj)
            witness["metadata"]["name"] = "nfsguard-e2e-deny-witness"
            return witness
    raise AssertionError("no object to prove the native deny policy live")


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


def with_places(obj: Json, places: tuple[Any, ...]) -> Json:
    """``obj`` with the option places ``option_places`` read from what was stored."""
    out = copy.deepcopy(obj)
    if len(places) == 1:
        out.pop("mountOptions", None)
        if places[0] is not None:
            out["mountOptions"] = places[0]
        return out
    mount_options, annotation, attributes = places
    out["spec"].pop("mountOptions", None)
    if mount_options is not None:
        out["spec"]["mountOptions"] = mount_options
    annotations = out["metadata"].setdefault("annotations", {})
    annotations.pop(LEGACY, None)
    if annotation is not None:
        annotations[LEGACY] = annotation
    if attributes is not None:
        out["spec"]["csi"]["volumeAttributes"] = attributes
    return out


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


def webhook_only_driver(engine: Engine, native: NativePolicies, obj: Json) -> bool:
    """Whether ``obj`` is read by a driver profile the native path leaves to the webhook
    (``policy compile`` names them: ``webhook-only driver: ...``)."""
    target = engine.read(obj)
    left = {(kind, name) for kind, name, _ in native.drivers_left}
    return target is not None and (obj["kind"], target.driver) in left


_PRINTABLE = re.compile(r"^[ -~]*$")


def _cel_reads_ip(text: str) -> bool:
    """isIP() of the apiserver's CEL ip library (no IPv4-mapped IPv6, no zone)."""
    ip = parse_ip(text)
    return ip is not None and not (
        isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip.scope_id)
    )


def text_left_to_the_webhook(engine: Engine, obj: Json) -> bool:
    """Whether ``obj`` holds text the native path leaves to the webhook (docs/native-
    policies.md, "Native drivers": option text or a server outside printable ASCII, a
    server with ``%``, with ``:`` and ``.``, or with ``:`` and no IP CEL reads, a path
    with ``..`` segments, two spellings of one attribute key). Read from the raw
    object, so it holds for a few more objects than the CEL guard does."""
    target = engine.read(obj)
    if target is None:
        return False
    spec = obj.get("spec") or {}
    attrs = (spec.get("csi") or {}).get("volumeAttributes") or obj.get("parameters") or {}
    nfs = spec.get("nfs") or {}
    options = list((spec if obj["kind"] == "PersistentVolume" else obj).get("mountOptions") or [])
    options += [(obj["metadata"].get("annotations") or {}).get(LEGACY) or ""]
    options += [v for k, v in attrs.items() if k.lower() == "mountoptions"]
    paths = [nfs.get("path") or ""] + [
        v for k, v in attrs.items() if k.lower() in ("share", "subdir", "path")
    ]
    server = target.server or ""
    entries = list((spec if obj["kind"] == "PersistentVolume" else obj).get("mountOptions") or [])
    return (
        len(entries) > 1024
        or sum(len(o) + 1 for o in options) > 16384
        or not all(_PRINTABLE.match(o) for o in [*options, server])
        or "%" in server
        or (":" in server and ("." in server or not _cel_reads_ip(server.strip("[]"))))
        or any(part == ".." for p in paths for part in p.split("/"))
        or len({k.lower() for k in attrs}) != len(attrs)
    )


def named_in(engine: Engine, obj: Json, message: str) -> bool:
    """Whether a denial message names the deciding rule, its policy and its version."""
    d = decide(engine, offline_request(obj, "CREATE", "native"), UnknownInventory("e2e"))
    assert d.deciding is not None
    version = next(p.version for p in engine.policies if p.name == d.deciding.policy)
    return f'rule "{d.deciding.rule}" (policy {d.deciding.policy} version {version})' in message


def compare(
    api: k8s.ApiClient,
    admission: k8s.AdmissionregistrationV1Api,
    core: k8s.CoreV1Api,
    engine: Engine,
    native: NativePolicies,
    register_webhook: Any,
    objects: list[Json] | None = None,
    *,
    together: bool = False,
) -> tuple[int, int, int]:
    """Both paths on ``objects`` (the corpus when None); returns (compared, pinned,
    denied). An object of a webhook-only driver is not compared: the native path must
    leave it exactly as it came. ``together``: also both installed at once ("native
    first, webhook for the rest"), which must store and refuse exactly what the webhook
    alone does, for every object, webhook-only rules included."""
    objects = corpus() if objects is None else objects
    with register_webhook():
        by_webhook = admit_all(api, objects)
    with installed(admission, core, native, deny_witness(engine, native, objects)):
        by_native = admit_all(api, objects)
        # reinvocation: what the native path stored, reviewed again, is stored unchanged
        pinned_natively = [
            with_places(o, by_native[o["metadata"]["name"]][1])
            for o in objects
            if by_native[o["metadata"]["name"]][0] == "allowed"
            and by_native[o["metadata"]["name"]][1] != option_places(o)
        ]
        again = admit_all(api, pinned_natively)
        if together:
            # proven live by an object only the webhook changes (a webhook-only driver's)
            witness = next(
                o
                for o in objects
                if webhook_only_driver(engine, native, o)
                and by_webhook[o["metadata"]["name"]] != ("allowed", option_places(o))
            )
            with register_webhook(
                lambda: admit(api, witness) == by_webhook[witness["metadata"]["name"]]
            ):
                by_both = admit_all(api, objects)
    compared = pinned = denied = 0
    differences = [
        f"{name}: pinned again: {option_places(o)} -> {again[name]}"
        for o in pinned_natively
        if again[name := o["metadata"]["name"]] != ("allowed", option_places(o))
    ]
    assert pinned_natively or not objects
    if together:
        for obj in objects:
            name = obj["metadata"]["name"]
            w, b = by_webhook[name], by_both[name]
            if w[0] != b[0] or (w[0] == "allowed" and w[1] != b[1]):
                differences.append(f"{name} (both installed): webhook {w}\n  both {b}")
    for obj in objects:
        name = obj["metadata"]["name"]
        if webhook_only_driver(engine, native, obj):
            if by_native[name] != ("allowed", option_places(obj)):
                differences.append(f"{name}: webhook-only driver, native {by_native[name]}")
            continue
        if webhook_only(engine, native, obj):
            continue
        if text_left_to_the_webhook(engine, obj):
            # the native path leaves it as it came (or, where the guard is narrower than
            # this reading of it, does what the webhook does)
            if by_native[name] not in (("allowed", option_places(obj)), by_webhook[name]):
                differences.append(f"{name}: left to the webhook, native {by_native[name]}")
            continue
        compared += 1
        w, n = by_webhook[name], by_native[name]
        if n[0] == "denied" and DENY_POLICY in n[1] and not named_in(engine, obj, n[1]):
            differences.append(f"{name}: the native denial does not name its rule: {n[1]}")
        if w[0] != n[0] or (w[0] == "allowed" and w[1] != n[1]):
            differences.append(f"{name}: {option_places(obj)}\n  webhook {w}\n  native  {n}")
        denied += w[0] == "denied"
        pinned += w[0] == "allowed" and w[1] != option_places(obj)
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences[:20])
    return compared, pinned, denied


@pytest.fixture
def webhook_registration(
    start_webhook: WebhookFactory,
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
) -> Any:
    """The served webhook for ``policy``, registered as the shipped configuration with
    the matchConditions ``nfsguard webhook-config --policy`` writes for that policy
    (so a driver only these rules name reaches it, as it would in a cluster)."""

    def make(policy: Path) -> Any:
        wh = start_webhook(policy)
        admission = admissionregistration_v1
        cfg = webhook_configuration_for(wh.url, wh.ca_crt.read_bytes())
        conditions = match_conditions(Scope.of(load_engine([str(policy)])))
        for entry in cfg["webhooks"]:
            if any("persistentvolumes" in r["resources"] for r in entry["rules"]):
                entry["matchConditions"] = conditions

        @contextlib.contextmanager
        def registered(live: Callable[[], bool] | None = None) -> Iterator[None]:
            """Registered and proven live by the probe PV, or by ``live`` when the native
            policies are installed too (they pin the probe themselves)."""
            r = Registration(api_client, cfg)
            if live is None:
                r.register()
            else:
                admission.create_mutating_webhook_configuration(mwc_model(cfg))
                r.registered = True
                wait_until("the webhook to answer beside the native policies", live)
            try:
                yield
            finally:
                if live is None:
                    r.unregister()
                else:
                    admission.delete_mutating_webhook_configuration(r.name)
                    wait_until("the webhook to be gone", lambda: not live())

        return registered

    return make


def test_every_compile_passes_the_apiservers_validation(
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
) -> None:
    """Server-side dry run (full validation, CEL compiled, nothing stored) of what
    `policy compile` makes of the shipped, the test, the acceptance and the odd policies
    (escapes, refused addresses)."""
    for source in (REPO / "policies", NATIVE_POLICY, ACCEPTANCE_POLICIES, ODD_POLICY):
        native = compile_native(load_engine([str(source)]))
        assert native.objects, source
        for doc in native.objects:
            _call(admissionregistration_v1, "create", doc, dry_run="All")


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


def test_native_equals_the_webhook_on_the_acceptance_policies(
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    webhook_registration: Any,
) -> None:
    """Policies written from the policy language alone (several files and policies, pins
    4.0, 4.1 and 3, every match key, exclude, Audit, a webhook-only kernel rule) on
    objects the main corpus lacks."""
    engine = load_engine([str(ACCEPTANCE_POLICIES)])
    native = compile_native(engine)
    assert [w.rule for w in native.webhook_only] == [
        "el7-old-kernels",
        "classy-pin",
        "warn-any-nfs",
        "audit-csi",
    ]
    compared, pinned, denied = compare(
        api_client,
        admissionregistration_v1,
        core_v1,
        engine,
        native,
        webhook_registration(ACCEPTANCE_POLICIES),
        acceptance_corpus(),
        together=True,
    )
    assert compared > 1000 and pinned > 300 and denied > 100, (compared, pinned, denied)


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


def _pinned_here(which: str) -> tuple[Path, Engine, list[Json]]:
    """(policy, engine, PVs a compiled rule pins) for the outage test."""
    if which == "test":
        prefixes = ("nat-0-", "nat-13-", "nat-subdir-pv-gold-")
        engine = load_engine([str(NATIVE_POLICY)])
        objects = [o for o in corpus() if o["metadata"]["name"].startswith(prefixes)]
        return NATIVE_POLICY, engine, [o for o in objects if o["kind"] == "PersistentVolume"]
    # every 3rd acceptance PV the native path reads: pins 4.0, 4.1 and 3, every driver
    engine = load_engine([str(ACCEPTANCE_POLICIES)])
    native = compile_native(engine)
    objects = [
        o
        for o in acceptance_corpus()
        if o["kind"] == "PersistentVolume"
        and not webhook_only_driver(engine, native, o)
        and not text_left_to_the_webhook(engine, o)
        and not webhook_only(engine, native, o)
        and not opted_out(o)
    ]
    return ACCEPTANCE_POLICIES, engine, objects[::3]


@pytest.mark.parametrize("which", ["test", "acceptance"])
def test_pins_hold_with_the_webhook_down_and_mount_nfs_reads_them(
    which: str,
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    start_webhook: WebhookFactory,
    register: RegisterFactory,
    cleanup: Cleanup,
    tmp_path: Path,
) -> None:
    policy, engine, pinned_here = _pinned_here(which)
    native = compile_native(engine)
    wh = start_webhook(policy)
    register(wh, failure_policy="Ignore")
    wh.stop()  # the outage: Ignore lets every object through unreviewed
    wait_until(
        "the stopped webhook to let the probe through", lambda: probe(core_v1) == [PROBE_ASKS]
    )
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
    pins = {d.after.version for _, d in stored if d.after is not None}
    assert pins == ({"4.0", "3"} if which == "test" else {"4.0", "4.1", "3"}), pins
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


def compare_updates(
    api_client: k8s.ApiClient,
    admission: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    storage_v1: k8s.StorageV1Api,
    registration: Any,
    cleanup: Cleanup,
    engine: Engine,
    base: list[Json],
) -> tuple[int, set[tuple[str, str, str, bool]]]:
    """``base`` stored before any policy (nothing registered), then every update of
    ``_updates`` through the webhook alone and the native policies alone; returns
    (compared, the (update, answer, outcome, existing) kinds reached)."""
    native = compile_native(engine)
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
    with registration():
        by_webhook = [replace(api_client, new) for _, new in updates]
    with installed(admission, core_v1, native, deny_witness(engine, native, base)):
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
    return compared, kinds


def _update_bases(which: str) -> tuple[Path, Engine, list[Json]]:
    """(policy, engine, objects to store) for the UPDATE comparisons."""
    if which == "test":
        prefixes = ("nat-0-", "nat-5-", "nat-8-", "nat-13-", "nat-subdir")
        base = [o for o in corpus() if o["metadata"]["name"].startswith(prefixes)]
        return NATIVE_POLICY, load_engine([str(NATIVE_POLICY)]), base
    # every 8th acceptance object the native path reads: pins 4.0/4.1/3, other drivers
    engine = load_engine([str(ACCEPTANCE_POLICIES)])
    native = compile_native(engine)
    base = [
        o
        for o in acceptance_corpus()[::8]
        if not webhook_only_driver(engine, native, o) and not text_left_to_the_webhook(engine, o)
    ]
    return ACCEPTANCE_POLICIES, engine, base


@pytest.mark.parametrize("which", ["test", "acceptance"])
def test_native_equals_the_webhook_on_updates_of_existing_objects(
    which: str,
    api_client: k8s.ApiClient,
    admissionregistration_v1: k8s.AdmissionregistrationV1Api,
    core_v1: k8s.CoreV1Api,
    storage_v1: k8s.StorageV1Api,
    webhook_registration: Any,
    cleanup: Cleanup,
) -> None:
    """Objects stored before any policy, then updated: an update that keeps the options
    is never denied (but pinned where the field may change), one that asks for 4.2 is
    judged as new, a bind never reaches either path."""
    policy, engine, base = _update_bases(which)
    compared, kinds = compare_updates(
        api_client,
        admissionregistration_v1,
        core_v1,
        storage_v1,
        webhook_registration(policy),
        cleanup,
        engine,
        base,
    )
    assert compared > 400, compared
    # the cases that matter were all reached
    assert ("label", "allowed", "warned", True) in kinds  # a deny kept, options unchanged
    assert ("label", "allowed", "mutated", True) in kinds  # a pin still written
    assert ("options", "denied", "denied", False) in kinds  # asking for 4.2 anew
