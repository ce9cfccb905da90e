"""nfsguard installed on the real node with `helm install`, and the traffic the node tests
send it.

Plain library code: no pytest in here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch
from kubernetes import client as k8s

from tests.e2e.kubecluster import PIN, probe, probe_pv, pv_model
from tests.node.cluster import NodeCluster, node_env

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "nfsguard"
NAMESPACE = "nfsguard"
DEPLOYMENT = "nfsguard"
SELECTOR = "app.kubernetes.io/name=nfsguard,app.kubernetes.io/component=webhook"
CERTS_JOB = "nfsguard-certs-init"  # -<revision>
RELEASE = "nfsguard"  # full name "nfsguard": every object is named after it
WEBHOOK = "nfsguard"
#: The e2e suite's main policy, given to the chart as a site policy (it pins
#: kubecluster.PROBE_SERVER unconditionally, so the probe shows the webhook is live).
POLICY = REPO / "tests" / "e2e" / "policies" / "main.yaml"
SITE_POLICY = "e2e-main.yaml"
Json = dict[str, Any]


def image_values(image: str) -> list[str]:
    """`--set` arguments for the locally built image (imported into containerd, never
    pulled: imagePullPolicy Never)."""
    repository, tag = image.rsplit(":", 1)
    return [
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
    ]


def policy_file_value(name: str, path: Path) -> list[str]:
    """`--set-file` for one site policy file (`policies.site.<name>`; dots escaped)."""
    return ["--set-file", f"policies.site.{name.replace('.', chr(92) + '.')}={path}"]


@dataclass
class Install:
    """One `helm install` of charts/nfsguard on the node; uninstall() is `helm uninstall`."""

    node: NodeCluster
    helm_bin: str
    image: str
    timings: dict[str, float] = field(default_factory=dict)
    revision: int = 0
    installed: bool = False

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.node.api)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.node.api)

    def helm(self, *args: str, timeout: float = 300) -> str:
        argv = [
            self.helm_bin,
            *args,
            "--kubeconfig",
            str(self.node.kubeconfig),
            "--namespace",
            NAMESPACE,
        ]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=node_env()
        )
        if done.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: exit {done.returncode}: {done.stderr}")
        return done.stdout

    def install(self) -> Install:
        """`helm install` (no --wait: each step is waited for and timed here)."""
        t0 = time.monotonic()
        self.helm(
            "install",
            RELEASE,
            str(CHART),
            "--create-namespace",
            *image_values(self.image),
            *policy_file_value(SITE_POLICY, POLICY),
        )
        self.installed = True
        self.revision = 1
        self.timings["helm"] = time.monotonic() - t0
        self.timings["certs-job"] = self.wait_certs_job(1)
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

    def upgrade(self, *args: str) -> None:
        """`helm upgrade --reuse-values` with more values (no --wait: the caller waits for
        what it is after, and for the revision's certs Job with wait_certs_job)."""
        self.helm("upgrade", RELEASE, str(CHART), "--reuse-values", *args)
        self.revision += 1

    def wait_certs_job(self, revision: int, timeout: float = 240) -> float:
        """Until the revision's certs Job succeeded; on failure or timeout, the error says
        what its pods, their containers and the namespace's events said."""
        batch = k8s.BatchV1Api(self.node.api)
        name = f"{CERTS_JOB}-{revision}"

        def done() -> bool:
            try:
                job = batch.read_namespaced_job(name, NAMESPACE)
            except k8s.ApiException:
                return False
            st = job.status
            if st is not None and (st.failed or 0) > 2:
                raise RuntimeError(f"Job {name} failed {st.failed} times:\n{self.diagnose()}")
            return bool(st and (st.succeeded or 0) >= 1)

        try:
            return self.node.wait(f"Job {name} to complete", done, timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.diagnose()}") from None

    def diagnose(self) -> str:
        """Pods (phase, container states), recent events and the logs of every container
        of the namespace: what a stuck install needs to be understood."""
        lines: list[str] = []
        for pod in self.core.list_namespaced_pod(NAMESPACE).items:
            name = name_of(pod)
            st = pod.status or k8s.V1PodStatus()
            lines.append(f"pod {name}: {st.phase} {st.conditions}")
            for cs in [*(st.init_container_statuses or []), *(st.container_statuses or [])]:
                lines.append(f"  {cs.name}: ready={cs.ready} restarts={cs.restart_count}")
                lines.append(f"    {cs.state}")
            spec = pod.spec or k8s.V1PodSpec(containers=[])
            for c in [*(spec.init_containers or []), *spec.containers]:
                logs = self.node.kubectl(
                    "logs", "-n", NAMESPACE, name, "-c", c.name, "--tail=20", check=False
                )
                lines += [f"  [{c.name}] {line}" for line in logs.splitlines()]
        for ev in self.core.list_namespaced_event(NAMESPACE).items[-30:]:
            obj = ev.involved_object
            lines.append(f"event {obj.kind}/{obj.name}: {ev.reason}: {ev.message}")
        return "\n".join(lines)

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
        """`helm uninstall` (its pre-delete hook removes the webhook configuration), then
        until the release's pods are gone."""
        t0 = time.monotonic()
        self.helm("uninstall", RELEASE, "--ignore-not-found", "--timeout", "120s")
        self.installed = False
        self.node.wait("the release's pods to be gone", lambda: not self.pods(), timeout)
        return time.monotonic() - t0

    def delete_namespace(self, timeout: float = 180) -> None:
        """What helm does not own (the Secrets the certs Job made, the Lease) goes with
        the namespace."""
        with contextlib.suppress(k8s.ApiException):
            self.core.delete_namespace(NAMESPACE)

        def gone() -> bool:
            try:
                self.core.read_namespace(NAMESPACE)
            except k8s.ApiException as e:
                return bool(e.status == 404)
            return False

        self.node.wait(f"namespace {NAMESPACE} to be deleted", gone, timeout)


def name_of(pod: k8s.V1Pod) -> str:
    assert pod.metadata is not None and pod.metadata.name
    return str(pod.metadata.name)


# ---------------------------------------------------------------------------------------------
# Reviews through the apiserver, under load


@dataclass
class ReviewLoad:
    """Threads that keep the apiserver reviewing: dry-run creates of the probe PV, each one
    an AdmissionReview sent through the Service to a replica. A review counts as failed
    when the create is refused or the PV is not pinned. Bounded: `threads` clients, each
    at most `rate` reviews a second (about what two busy provisioners send)."""

    node: NodeCluster
    threads: int = 2
    rate: float = 20.0
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        api = self.node.new_api_client()
        core = k8s.CoreV1Api(api)
        next_at = time.monotonic()
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                next_at = time.monotonic() + 1 / self.rate
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
