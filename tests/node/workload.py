"""nfsguard installed on the real node, and the traffic the node tests send it.

Plain library code: no pytest in here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
import yaml
from kubernetes import client as k8s

from tests.e2e.kubecluster import PIN, probe, probe_pv, pv_model
from tests.node.cluster import NodeCluster

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "nfsguard"
DEPLOYMENT = "nfsguard"
SELECTOR = "app.kubernetes.io/name=nfsguard,app.kubernetes.io/component=webhook"
CERTS_JOB = "nfsguard-certs-init"
WEBHOOK = "nfsguard"
#: The e2e suite's main policy (it pins kubecluster.PROBE_SERVER unconditionally).
POLICY = REPO / "tests" / "e2e" / "policies" / "main.yaml"
Json = dict[str, Any]


def _pod_specs(doc: Json) -> Iterator[Json]:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "Job", "DaemonSet", "StatefulSet"):
        yield spec["template"]["spec"]
    elif kind == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]


def rendered_manifests(node: NodeCluster, image: str, policy_text: str) -> list[Json]:
    """`kubectl kustomize manifests/` (what `kubectl apply -k` installs), with the locally
    built image (imagePullPolicy Never: nothing is pulled here) and the test policy in the
    policies ConfigMap instead of the shipped one (whose example site rule is not wanted)."""
    out = node.kubectl("kustomize", str(REPO / "manifests"))
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]
    for doc in docs:
        for spec in _pod_specs(doc):
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
                c["image"] = image
                c["imagePullPolicy"] = "Never"
        if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "nfsguard-policies":
            doc["data"] = {"main.yaml": policy_text}
    return docs


@dataclass
class Install:
    """One install of the manifests; uninstall() removes it and waits until it is gone."""

    node: NodeCluster
    docs: list[Json]
    path: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.node.api)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.node.api)

    def apply(self) -> Install:
        self.path.write_text(yaml.safe_dump_all(self.docs))
        t0 = time.monotonic()
        self.node.kubectl("apply", "-f", str(self.path))
        batch = k8s.BatchV1Api(self.node.api)

        def job_done() -> bool:
            try:
                job = batch.read_namespaced_job(CERTS_JOB, NAMESPACE)
            except k8s.ApiException:
                return False
            if job.status and (job.status.failed or 0) > 3:
                raise RuntimeError(f"{CERTS_JOB} failed {job.status.failed} times")
            return bool(job.status and (job.status.succeeded or 0) >= 1)

        self.timings["certs-job"] = self.node.wait(f"Job {CERTS_JOB} to complete", job_done, 240)
        self.timings["replicas"] = self.node.wait(
            "both replicas Ready", lambda: len(self.ready_pods()) == 2, 240
        )
        core = self.core
        self.timings["registered"] = self.node.wait(
            "the self-registered webhook to pin the probe through the Service",
            lambda: probe(core) == [PIN],
            120,
        )
        self.timings["install"] = time.monotonic() - t0
        return self

    def pods(self) -> list[k8s.V1Pod]:
        return list(self.core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items)

    def ready_pods(self) -> list[k8s.V1Pod]:
        """Pods of the Deployment that are Ready and not being deleted."""
        ready = []
        for p in self.pods():
            if p.metadata is not None and p.metadata.deletion_timestamp is not None:
                continue
            conds = (p.status.conditions if p.status else None) or []
            if any(c.type == "Ready" and c.status == "True" for c in conds):
                ready.append(p)
        return ready

    def wait_replicas(
        self, what: str, timeout: float = 180, exclude: frozenset[str] = frozenset()
    ) -> float:
        """Until two Ready replicas, none of them named in `exclude`, and the Deployment
        says the rollout is complete."""

        def done() -> bool:
            names = {name_of(p) for p in self.ready_pods()}
            if len(names) != 2 or names & exclude:
                return False
            d = self.apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
            st = d.status
            return bool(
                st
                and st.updated_replicas == 2
                and st.ready_replicas == 2
                and (st.replicas or 0) == 2
                and d.metadata is not None
                and (st.observed_generation or 0) >= (d.metadata.generation or 0)
            )

        return self.node.wait(what, done, timeout)

    def secret(self, name: str, key: str) -> bytes:
        s = self.core.read_namespaced_secret(name, NAMESPACE)
        return base64.b64decode((s.data or {})[key])

    def uninstall(self, timeout: float = 180) -> float:
        """Delete what apply created plus the webhook configuration the server registered
        itself, and wait until the namespace is gone."""
        t0 = time.monotonic()
        adm = k8s.AdmissionregistrationV1Api(self.node.api)
        with contextlib.suppress(k8s.ApiException):
            adm.delete_mutating_webhook_configuration(WEBHOOK)
        self.node.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(self.path))

        def gone() -> bool:
            try:
                self.core.read_namespace(NAMESPACE)
            except k8s.ApiException as e:
                return bool(e.status == 404)
            return False

        self.node.wait(f"namespace {NAMESPACE} to be deleted", gone, timeout)
        return time.monotonic() - t0


def name_of(pod: k8s.V1Pod) -> str:
    assert pod.metadata is not None and pod.metadata.name
    return str(pod.metadata.name)


# ---------------------------------------------------------------------------------------------
# Reviews through the apiserver, under load


@dataclass
class ReviewLoad:
    """Threads that keep the apiserver reviewing: dry-run creates of the probe PV, each one
    an AdmissionReview sent through the Service to a replica. A review counts as failed
    when the create is refused or the PV is not pinned."""

    node: NodeCluster
    threads: int = 2
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        api = self.node.new_api_client()
        core = k8s.CoreV1Api(api)
        try:
            while not self._stop.is_set():
                got: list[str] | str
                try:
                    pv = core.create_persistent_volume(pv_model(probe_pv()), dry_run="All")
                    got = list(pv.spec.mount_options or []) if pv.spec else []
                except k8s.ApiException as e:
                    got = f"HTTP {e.status}: {str(e.body)[:300]}"
                except Exception as e:  # a transport error is a failed review too
                    got = repr(e)
                with self._lock:
                    if got == [PIN]:
                        self.ok += 1
                    else:
                        self.failed += 1
                        if len(self.errors) < 20:
                            self.errors.append(f"{time.strftime('%T')}: {got!r}")
        finally:
            api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> ReviewLoad:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def wait_for(self, n: int, timeout: float = 60) -> None:
        """Until at least `n` more reviews succeeded (the load really runs)."""
        start = self.ok
        self.node.wait(f"{n} reviews", lambda: self.ok - start >= n, timeout)


# ---------------------------------------------------------------------------------------------
# One replica, directly


def review_pod(pod_ip: str, ca_pem: bytes, pv: Json, timeout: float = 5) -> Json:
    """POST an AdmissionReview for a CREATE of `pv` straight to one replica (its pod IP on
    the node's bridge, TLS checked against the installed CA for the Service name): the
    PV as this replica would admit it."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "PersistentVolume"},
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumes"},
            "name": pv["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {"username": "nfsguard-node-test"},
            "object": pv,
            "dryRun": True,
        },
    }
    req = urllib.request.Request(
        f"https://{pod_ip}:8443/mutate",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json", "Host": "nfsguard.nfsguard.svc"},
        method="POST",
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _SniHandler(ctx, "nfsguard.nfsguard.svc")
    )
    with opener.open(req, timeout=timeout) as resp:
        answer: Json = json.loads(resp.read())["response"]
    patched = pv
    if answer.get("patch"):
        patched = jsonpatch.apply_patch(pv, json.loads(base64.b64decode(answer["patch"])))
    return {"allowed": answer.get("allowed"), "object": patched}


class _SniHandler(urllib.request.HTTPSHandler):
    """HTTPS to an IP, with the certificate checked for a DNS name (the Service's)."""

    def __init__(self, ctx: ssl.SSLContext, server_hostname: str) -> None:
        super().__init__(context=ctx)
        self._ctx, self._name = ctx, server_hostname

    def https_open(self, req: urllib.request.Request) -> Any:
        import http.client

        ctx, name = self._ctx, self._name

        class Conn(http.client.HTTPSConnection):
            def connect(self) -> None:
                http.client.HTTPConnection.connect(self)
                self.sock = ctx.wrap_socket(self.sock, server_hostname=name)

        return self.do_open(Conn, req)
