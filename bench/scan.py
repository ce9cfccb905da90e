"""Scan scale benchmark: ``nfsguard scan`` of N PVs through the real paging protocol.

    .venv/bin/python -m bench.scan [--pvs 10000 100000] [--outputs jsonl table json] [--json]

A local list server (loopback HTTP, the apimachinery list protocol: ``limit``,
``metadata.continue``, ``items`` without kind) generates PVs on the fly from their
index, so the server holds none of them; a quarter are in-tree PVs on the incident's
server with no version (fixable), the rest csi-driver-nfs PVs, some with a version in
``volumeAttributes`` (not fixable in place), some already pinned. Pods, PVCs, events,
StorageClasses and Nodes are empty lists. ``nfsguard scan`` runs as its own process
(the installed CLI, ``--kubeconfig`` pointing at the server) and is timed; its peak
RSS is read from ``os.wait4``'s rusage of that one child. Not a test: nothing is
asserted; docs/performance.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

POLICY = """\
apiVersion: nfsguard.io/v1alpha1
kind: NFSMountPolicy
metadata: {name: bench-scan}
spec:
  version: "bench-1"
  pin: "4.0"
  rules:
  - name: pin-incident
    match:
      exports:
      - server: 192.168.100.7
    action: pin
"""


def pv(i: int) -> dict[str, Any]:
    name = f"pv-{i:07d}"
    spec: dict[str, Any] = {
        "capacity": {"storage": "10Gi"},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "nfs-ssd",
    }
    if i % 4 == 0:
        spec["nfs"] = {"server": "192.168.100.7", "path": f"/data1/k8sdev/{name}"}
        spec["mountOptions"] = ["hard"]
    else:
        attrs = {"server": "192.168.100.7", "share": "/data1", "subdir": name}
        if i % 4 == 1:
            attrs["mountOptions"] = "vers=4.1"
        spec["csi"] = {
            "driver": "nfs.csi.k8s.io",
            "volumeHandle": f"x#{name}",
            "volumeAttributes": attrs,
        }
        if i % 4 == 2:
            spec["mountOptions"] = ["nfsvers=4.0"]
    meta = {"name": name, "resourceVersion": str(1000 + i), "uid": f"uid-{i}"}
    return {"metadata": meta, "spec": spec}


class ListServer:
    """Serves /api/v1/persistentvolumes in pages; every other list is empty."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pages = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                url = urlparse(self.path)
                q = parse_qs(url.query)
                items: list[dict[str, Any]] = []
                meta: dict[str, Any] = {"resourceVersion": "1"}
                if url.path == "/api/v1/persistentvolumes":
                    api.pages += 1
                    limit = int(q.get("limit", ["500"])[0])
                    start = int(q.get("continue", ["0"])[0])
                    end = min(start + limit, api.count)
                    items = [pv(i) for i in range(start, end)]
                    if end < api.count:
                        meta["continue"] = str(end)
                        meta["remainingItemCount"] = api.count - end
                body = json.dumps(
                    {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items}
                )
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def kubeconfig(d: Path, port: int) -> Path:
    p = d / "kubeconfig"
    p.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "b", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "b", "user": {"token": "bench"}}],
                "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b"}}],
                "current-context": "b",
            }
        )
    )
    return p


def run_scan(count: int, output: str, d: Path) -> dict[str, Any]:
    server = ListServer(count)
    try:
        kc = kubeconfig(d, server.port)
        policy = d / "policy.yaml"
        policy.write_text(POLICY)
        cmd = [
            sys.executable,
            "-m",
            "webhook",
            "scan",
            "--policy",
            str(policy),
            "--kubeconfig",
            str(kc),
            "-o",
            output,
        ]
        env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        out = d / f"out-{count}-{output}"
        with out.open("wb") as sink:
            t0 = time.perf_counter()
            child = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.PIPE, env=env)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        err = child.stderr.read().decode() if child.stderr else ""
        if code not in (0, 1):
            raise SystemExit(f"scan failed ({code}): {err}")
        return {
            "pvs": count,
            "output": output,
            "seconds": round(seconds, 2),
            "pvs_per_second": round(count / seconds),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "pages": server.pages,
            "output_mib": round(out.stat().st_size / 2**20, 1),
        }
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pvs", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--outputs", nargs="+", default=["jsonl", "table", "json"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for output in args.outputs:
            for count in args.pvs:
                r = run_scan(count, output, Path(tmp))
                results.append(r)
                if not args.json:
                    print(
                        f"{r['output']:>5} {r['pvs']:>7} PVs: {r['seconds']:>7.2f} s "
                        f"({r['pvs_per_second']} PV/s), peak RSS {r['peak_rss_mib']} MiB, "
                        f"{r['pages']} pages, output {r['output_mib']} MiB",
                        flush=True,
                    )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
