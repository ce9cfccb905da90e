"""Where a review's time goes in the shipped configuration, stage by stage, in-process.

    .venv/bin/python -m bench.breakdown [--reviews 3000] [--rules 100]

The stages of webhook/admission/handler.py ``ReviewHandler.handle`` and of the WSGI
answer, each timed around the project's own function on the shipped policies (the
chart's ConfigMap plus an N-rule site policy) with the real audit writer as the
Deployment configures it (Ed25519 checkpoints, a stdout copy, fsync per group commit) on
a file in /var/tmp: parse (``parse_review``), decide, patch and response (``respond``
and orjson), audit (``record``, split into its CPU part and the write+fsync it waits
for). One thread, so no lock is contended. The served p50 of `make bench` minus the sum
of these is TLS, HTTP and gunicorn. A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from bench.flush import timed_flushes
from bench.workload import review_body, write_policy
from webhook.admission.handler import decide, record, respond
from webhook.admission.review import parse_review
from webhook.audit.signing import generate, load_signer
from webhook.audit.writer import AuditWriter
from webhook.cli.common import load_engine
from webhook.nfs.inventory import UnknownInventory

REPO = Path(__file__).resolve().parent.parent


def _us(samples: list[float]) -> str:
    p99 = sorted(samples)[int(len(samples) * 0.99)]
    return f"{statistics.median(samples) * 1e6:,.0f} us ({p99 * 1e6:,.0f} us)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reviews", type=int, default=3000)
    ap.add_argument("--rules", type=int, default=100)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nfsguard-breakdown-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        policies = work / "policies"
        policies.mkdir()
        configmap = yaml.safe_load((REPO / "manifests" / "30-policies.yaml").read_text())
        for name, text in configmap["data"].items():
            (policies / name).write_text(text)
        write_policy(policies, args.rules)
        engine = load_engine([str(policies)])
        inventory = UnknownInventory("bench")
        key = work / "audit.key"
        generate(str(key), str(work / "audit.pub"))
        copy_fd = os.open(work / "stdout.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        writer = AuditWriter(
            str(work / "audit" / "audit.log"),
            signer=load_signer(str(key)),
            stdout=True,
            stdout_fd=copy_fd,
        )
        body = review_body()
        stages: dict[str, list[float]] = {
            k: [] for k in ("parse", "decide", "respond", "audit", "audit cpu", "total")
        }
        try:
            with timed_flushes() as fsync_time:  # the writer's own flush, timed
                for i in range(args.reviews + 200):
                    raw = body.replace(b'"uid":"', f'"uid":"{i:08d}-'.encode(), 1)
                    t0 = time.perf_counter()
                    request = parse_review(raw)
                    t1 = time.perf_counter()
                    decision = decide(engine, request, inventory)
                    t2 = time.perf_counter()
                    answer = orjson.dumps(respond(request.uid, decision))
                    t3 = time.perf_counter()
                    before = len(fsync_time)
                    record(writer, request, decision, coverage=False)
                    t4 = time.perf_counter()
                    assert answer and decision.recorded
                    if i < 200:  # warm-up
                        continue
                    waited = sum(fsync_time[before:])
                    stages["parse"].append(t1 - t0)
                    stages["decide"].append(t2 - t1)
                    stages["respond"].append(t3 - t2)
                    stages["audit"].append(t4 - t3)
                    stages["audit cpu"].append(t4 - t3 - waited)
                    stages["total"].append(t4 - t0)
        finally:
            writer.close()
            os.close(copy_fd)
    print(f"{args.reviews} reviews, shipped policies + {args.rules}-rule site policy, one thread")
    print("| stage | median (p99) |")
    print("|---|---:|")
    for name, samples in stages.items():
        print(f"| {name} | {_us(samples)} |")
    print(f"| audit: write+fsync waited | {_us(fsync_time[200:])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
