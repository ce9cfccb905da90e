"""PV create latency through a real kube-apiserver: no admission, nfsguard, native MAP.

    .venv/bin/python -m bench.apiserver_latency [--creates 300] [--write-doc docs/e2e.md]

A benchmark, not a test: it starts etcd + kube-apiserver on 127.0.0.1 (tests/e2e harness,
KUBEBUILDER_ASSETS or `make kube-assets`), then times N PV creates as seen by the client
(Python kubernetes client, one connection, sequential; then ``--clients`` clients at once,
each with its own connection) in five set-ups:

  none     nothing registered
  webhook  `nfsguard serve` (tests/e2e/policies/main.yaml) registered from manifests/,
           served as the Deployment serves it: the audit log with Ed25519-signed
           checkpoints and its stdout copy (bench.shipped's settings)
  map      an equivalent MutatingAdmissionPolicy (admissionregistration.k8s.io/v1): a CEL
           JSONPatch that replaces spec.mountOptions for the same server
  native   main.yaml compiled by `nfsguard policy compile` (webhook/native: every rule's
           CEL, the pin MAP and the deny VAP), nothing else
  native-and-webhook  both: native first, the webhook sees the pinned object
  floor    bench.floor (the static "allowed" answer, no patch) served by nfsguard's own
           gunicorn set-up and worker on the same TLS pair, registered with the same
           configuration: what a webhook on this server stack costs before any of
           nfsguard's work (policy, patch, audit trail); it pins nothing, so it is proven
           live by the apiserver's per-webhook call count instead of the probe

Every create asks for nfsvers=4.1 on the pinned export, so both mutators do real work, and
each set-up is checked to store nfsvers=4.0 before it is timed. The apiserver's own
request and mutating-admission latency (from /metrics) are reported next to the client's view.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.e2e.kubecluster import (
    ENABLE_HINT,
    KUBE_VERSION,
    LOOPBACK,
    PIN,
    REPO,
    ControlPlane,
    ManagedProcess,
    Registration,
    WebhookServer,
    find_assets,
    free_port,
    loopback_env,
    mwc_model,
    nfs_pv,
    probe,
    pv_model,
    wait_until,
    webhook_configuration_for,
)

SERVER, SHARE = "192.0.2.10", "/exports/bench"
ASKED = ["nfsvers=4.1", "hard"]
POLICY = REPO / "tests" / "e2e" / "policies" / "main.yaml"
BEGIN, END = "<!-- bench:apiserver_latency:begin -->", "<!-- bench:apiserver_latency:end -->"

MAP_NAME = "nfsguard-bench-pin"
MAP_MATCH = f"has(object.spec.nfs) && object.spec.nfs.server == '{SERVER}'"
MAP_CEL = (
    "[JSONPatch{"
    "op: has(object.spec.mountOptions) ? 'replace' : 'add', "
    "path: '/spec/mountOptions', "
    "value: (has(object.spec.mountOptions) ? object.spec.mountOptions : [])"
    ".filter(o, !o.matches('^(nfs)?vers=|^v[234]|^minorversion=')) + ['nfsvers=4.0']"
    "}]"
)


def map_objects() -> tuple[k8s.V1MutatingAdmissionPolicy, k8s.V1MutatingAdmissionPolicyBinding]:
    policy = k8s.V1MutatingAdmissionPolicy.from_dict(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": MAP_NAME},
            "spec": {
                "failurePolicy": "Fail",
                "reinvocationPolicy": "IfNeeded",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["persistentvolumes"],
                        }
                    ]
                },
                "matchConditions": [
                    {
                        "name": "pinned-export",
                        "expression": MAP_MATCH,
                    }
                ],
                "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": MAP_CEL}}],
            },
        }
    )
    binding = k8s.V1MutatingAdmissionPolicyBinding.from_dict(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": MAP_NAME},
            "spec": {"policyName": MAP_NAME},
        }
    )
    assert policy is not None and binding is not None
    return policy, binding


@dataclass
class Result:
    name: str
    samples: list[float] = field(default_factory=list)  # seconds, as the client saw them
    # (sum, count) deltas of the SERVER_METRICS histograms over the timed creates
    server: dict[str, list[float]] = field(default_factory=dict)

    def pct(self, q: float) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]

    def server_mean(self, key: str) -> float | None:
        total, count = self.server.get(key, [0.0, 0.0])
        return total / count if count > 0 else None


SERVER_METRICS = {
    "request": (
        "apiserver_request_duration_seconds",
        ('verb="POST"', 'resource="persistentvolumes"'),
    ),
    "admit": (
        "apiserver_admission_step_admission_duration_seconds",
        ('operation="CREATE"', 'type="admit"'),
    ),
}


def metric_totals(cp: ControlPlane) -> dict[str, tuple[float, float]]:
    """(sum, count) of each SERVER_METRICS histogram, over all its matching series."""
    out = {k: (0.0, 0.0) for k in SERVER_METRICS}
    text = cp.metrics()
    for key, (metric, labels) in SERVER_METRICS.items():
        pat = re.compile(rf"^{metric}_(sum|count)\{{([^}}]*)\}} (\S+)$")
        total = count = 0.0
        for line in text.splitlines():
            m = pat.match(line)
            if m and all(lab in m[2] for lab in labels):
                if m[1] == "sum":
                    total += float(m[3])
                else:
                    count += float(m[3])
        out[key] = (total, count)
    return out


def run_block(
    cp: ControlPlane,
    core: k8s.CoreV1Api,
    res: Result,
    n: int,
    warmup: int,
    clients: list[k8s.CoreV1Api] | None = None,
) -> None:
    """`warmup` untimed then `n` timed creates, added to `res`; the PVs are deleted after.
    With ``clients``: the creates are spread over them, all at once (a thread each)."""

    def create(api: k8s.CoreV1Api = core) -> float:
        name = f"bench-{res.name.replace(' ', '-')}-{next(_seq)}"
        body = pv_model(nfs_pv(name, SERVER, SHARE, ASKED, labels=BENCH_LABEL))
        t0 = time.perf_counter()
        api.create_persistent_volume(body)
        return time.perf_counter() - t0

    for _ in range(warmup):
        create()
    before = metric_totals(cp)
    if clients:
        with ThreadPoolExecutor(len(clients)) as pool:
            share = max(1, n // len(clients))

            def creates(api: k8s.CoreV1Api) -> list[float]:
                return [create(api) for _ in range(share)]

            futures = [pool.submit(creates, c) for c in clients]
            res.samples += [t for f in futures for t in f.result()]
    else:
        res.samples += [create() for _ in range(n)]
    after = metric_totals(cp)
    core.delete_collection_persistent_volume(label_selector="bench=nfsguard")
    for key in SERVER_METRICS:
        acc = res.server.setdefault(key, [0.0, 0.0])
        acc[0] += after[key][0] - before[key][0]
        acc[1] += after[key][1] - before[key][1]


_seq = itertools.count()
BENCH_LABEL = {"bench": "nfsguard"}


def expect_pin(core: k8s.CoreV1Api, pinned: bool) -> Callable[[], bool]:
    def check() -> bool:
        pv = core.create_persistent_volume(
            pv_model(nfs_pv("bench-check", SERVER, SHARE, ASKED)), dry_run="All"
        )
        assert pv.spec is not None
        has_pin = PIN in (pv.spec.mount_options or []) and "nfsvers=4.1" not in (
            pv.spec.mount_options or []
        )
        return has_pin == pinned

    return check


@contextmanager
def map_registered(api: k8s.ApiClient) -> Iterator[None]:
    ar = k8s.AdmissionregistrationV1Api(api)
    policy, binding = map_objects()
    ar.create_mutating_admission_policy(policy)
    ar.create_mutating_admission_policy_binding(binding)
    try:
        wait_until("the MutatingAdmissionPolicy to pin", expect_pin(k8s.CoreV1Api(api), True))
        yield
    finally:
        ar.delete_mutating_admission_policy_binding(MAP_NAME)
        ar.delete_mutating_admission_policy(MAP_NAME)
        wait_until("the MutatingAdmissionPolicy to go", expect_pin(k8s.CoreV1Api(api), False))


@contextmanager
def native_installed(api: k8s.ApiClient) -> Iterator[None]:
    """POLICY compiled by `nfsguard policy compile` (webhook/native): the pin policy and
    the deny policy with their bindings, live (probed), deleted after."""
    from webhook.cli.common import load_engine
    from webhook.native.compiler import compile_native

    ar = k8s.AdmissionregistrationV1Api(api)
    objects = compile_native(load_engine([str(POLICY)])).objects
    calls = {
        "MutatingAdmissionPolicy": "mutating_admission_policy",
        "MutatingAdmissionPolicyBinding": "mutating_admission_policy_binding",
        "ValidatingAdmissionPolicy": "validating_admission_policy",
        "ValidatingAdmissionPolicyBinding": "validating_admission_policy_binding",
    }
    for doc in objects:
        getattr(ar, f"create_{calls[doc['kind']]}")(doc)
    try:
        wait_until("the native policies to pin", expect_pin(k8s.CoreV1Api(api), True))
        yield
    finally:
        for doc in reversed(objects):
            getattr(ar, f"delete_{calls[doc['kind']]}")(doc["metadata"]["name"])


def native_rows(
    cp: ControlPlane,
    api: k8s.ApiClient,
    config: dict[str, Any],
    results: dict[str, Result],
    n: int,
    w: int,
) -> None:
    """The compiled native policies alone, and beside the registered webhook."""
    core = k8s.CoreV1Api(api)
    with native_installed(api):
        run_block(cp, core, results["native"], n, w)
    wait_until("the native policies to go", expect_pin(core, False))
    reg = Registration(api, config)
    reg.register()
    try:
        with native_installed(api):
            run_block(cp, core, results["native-and-webhook"], n, w)
    finally:
        reg.unregister()  # waits until neither pins the probe


WEBHOOK_CALLS = re.compile(
    r"^apiserver_admission_webhook_admission_duration_seconds_count\{([^}]*)\} (\S+)$"
)


def webhook_calls(cp: ControlPlane, webhook: str) -> float:
    """How often the apiserver has called the webhook named ``webhook`` so far."""
    total = 0.0
    for line in cp.metrics().splitlines():
        m = WEBHOOK_CALLS.match(line)
        if m and f'name="{webhook}"' in m[1]:
            total += float(m[2])
    return total


@contextmanager
def floor_served(tls_dir: Path, workdir: Path) -> Iterator[str]:
    """bench.floor on a loopback port with the webhook's TLS pair (2 workers x 4
    threads, as served); yields its URL once it answers /healthz."""
    import ssl
    import urllib.request

    port = free_port()
    argv = [sys.executable, "-m", "bench.floor", "--tls-dir", str(tls_dir)]
    argv += ["--host", LOOPBACK, "--port", str(port), "--log-level", "warning"]
    env = loopback_env({"PYTHONPATH": str(REPO)})  # it runs in workdir, bench/ is ours
    proc = ManagedProcess("floor", argv, workdir / "floor.log", env=env)
    url = f"https://{LOOPBACK}:{port}"
    context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )

    def answers() -> bool:
        if not proc.alive():
            raise RuntimeError(f"bench.floor exited:\n{proc.tail()}")
        try:
            with opener.open(f"{url}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        wait_until("bench.floor to answer", answers)
        yield url
    finally:
        proc.stop()


@contextmanager
def floor_registered(
    cp: ControlPlane, api: k8s.ApiClient, config: dict[str, Any]
) -> Iterator[None]:
    """The floor's configuration registered; live once a probe create calls it, gone once
    one does not (the floor never patches, so the probe cannot tell)."""
    ar = k8s.AdmissionregistrationV1Api(api)
    core = k8s.CoreV1Api(api)
    webhook = str(config["webhooks"][0]["name"])

    def called() -> bool:
        before = webhook_calls(cp, webhook)
        probe(core)
        return webhook_calls(cp, webhook) > before

    ar.create_mutating_webhook_configuration(mwc_model(config))
    try:
        wait_until("the floor webhook to be called", called)
        yield
    finally:
        ar.delete_mutating_webhook_configuration(config["metadata"]["name"])
        wait_until("the floor webhook to be gone", lambda: not called())


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def render(
    results: list[Result], n: int, warmup: int, rounds: int, mach: dict[str, str], when: str
) -> str:
    base = results[0].pct(50)
    lines = [
        BEGIN,
        f"Run {when} with Kubernetes v{KUBE_VERSION}: {n} PV creates per set-up "
        f"(plus {warmup} untimed warm-up creates), sequential over one client connection, or "
        "(rows `x N`) from N clients at once, each with its own connection; the set-ups take "
        f"turns in {rounds} rounds so background load on the machine hits all of them alike. "
        "The webhook is served as the Deployment serves it (signed audit trail, stdout copy).",
        "",
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), kernel {mach['kernel']}, "
        f"Python {mach['python']}, load average at start {mach['loadavg']} "
        "(the machine is shared: treat differences below a few ms as noise).",
        "",
        "Client-side columns are what the Python client measured around each create; the",
        "last two are means from the apiserver's own /metrics over the same creates: the whole",
        "POST (`apiserver_request_duration_seconds`) and the mutating-admission step within it",
        '(`apiserver_admission_step_admission_duration_seconds{type="admit"}`).',
        "",
        "| set-up | p50 ms | p99 ms | mean ms | max ms | p50 over none | "
        "apiserver request mean ms | mutating admission mean ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ms(x: float | None) -> str:
        return f"{x * 1000:.2f}" if x is not None else "n/a"

    for r in results:
        lines.append(
            f"| {r.name} | {r.pct(50) * 1000:.2f} | {r.pct(99) * 1000:.2f} | "
            f"{statistics.fmean(r.samples) * 1000:.2f} | {max(r.samples) * 1000:.2f} | "
            f"{(r.pct(50) - base) * 1000:+.2f} | {ms(r.server_mean('request'))} | "
            f"{ms(r.server_mean('admit'))} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, block: str) -> None:
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.apiserver_latency", description=__doc__)
    ap.add_argument("--creates", type=int, default=300, help="timed creates per set-up")
    ap.add_argument("--warmup", type=int, default=30, help="untimed creates per set-up")
    ap.add_argument(
        "--rounds", type=int, default=5, help="interleave the set-ups in this many rounds"
    )
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients of the x-N rows")
    ap.add_argument("--write-doc", type=Path, help="replace the bench block in this Markdown file")
    args = ap.parse_args(argv)

    assets, why = find_assets()
    if assets is None:
        print(f"apiserver_latency: {why}: {ENABLE_HINT}", file=sys.stderr)
        return 2
    mach = machine()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    c = args.clients
    names = ["none", "floor", "webhook", "map", "native", "native-and-webhook"]
    names += [f"none x{c}", f"floor x{c}", f"webhook x{c}", f"map x{c}"]
    results = {name: Result(name) for name in names}
    per_round, warm = max(1, args.creates // args.rounds), max(1, args.warmup // args.rounds)
    with tempfile.TemporaryDirectory(prefix="nfsguard-bench-") as tmp:
        work = Path(tmp)
        cp = ControlPlane(assets, work / "kube").start()
        api = cp.api_client()
        core = k8s.CoreV1Api(api)
        from webhook.audit.signing import generate

        key = work / "audit.key"
        generate(str(key), str(work / "audit.pub"))
        wh = WebhookServer(
            POLICY, work / "nfsguard", extra_args=["--audit-key", str(key), "--audit-stdout"]
        )
        pool = [cp.api_client() for _ in range(c)]
        stack = ExitStack()
        parallel = [k8s.CoreV1Api(a) for a in pool]
        try:
            wh.start()
            config = webhook_configuration_for(wh.url, wh.ca_crt.read_bytes())
            floor = stack.enter_context(floor_served(wh.tls_dir, work))
            floor_config = webhook_configuration_for(
                floor, wh.ca_crt.read_bytes(), name="nfsguard-bench-floor"
            )
            wait_until("no mutation", expect_pin(core, False))
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
                run_block(cp, core, results["none"], per_round, warm)
                with floor_registered(cp, api, floor_config):
                    run_block(cp, core, results["floor"], per_round, warm)
                reg = Registration(api, config)
                reg.register()
                try:
                    run_block(cp, core, results["webhook"], per_round, warm)
                finally:
                    reg.unregister()
                with map_registered(api):
                    run_block(cp, core, results["map"], per_round, warm)
                native_rows(cp, api, config, results, per_round, warm)
                run_block(cp, core, results[f"none x{c}"], per_round, warm, parallel)
                with floor_registered(cp, api, floor_config):
                    run_block(cp, core, results[f"floor x{c}"], per_round, warm, parallel)
                reg = Registration(api, config)
                reg.register()
                try:
                    run_block(cp, core, results[f"webhook x{c}"], per_round, warm, parallel)
                finally:
                    reg.unregister()
                with map_registered(api):
                    run_block(cp, core, results[f"map x{c}"], per_round, warm, parallel)
        finally:
            stack.close()
            for a in pool:
                a.close()  # type: ignore[no-untyped-call]
            wh.stop()
            api.close()  # type: ignore[no-untyped-call]
            cp.stop()
    block = render(
        list(results.values()), per_round * args.rounds, warm * args.rounds, args.rounds, mach, when
    )
    print(block)
    if args.write_doc:
        write_doc(args.write_doc, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
