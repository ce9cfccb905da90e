"""What ``serve --audit-compliant`` costs: served compliant reviews with and without it.

    .venv/bin/python -m bench.audit_compliant [--reviews 1500] [--rounds 3]

A/B on the same machine, interleaved round after round: ``nfsguard serve`` (2 workers
x 4 threads, an unsigned audit log on the local disk) answers REVIEWS compliant PV
reviews (``nfsvers=4.0``: no rule decides) from 4 keep-alive clients over TLS on
127.0.0.1. Without the flag such a review writes nothing; with it, each one is a
record (write + fsync, group-committed). Prints reviews/s and p50/p99 latency per
run and the medians. Loopback only, bounded in requests; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.fixtures.samples import pv
from tests.integration.conftest import POLICIES, admission_review, post_review, start_server

CLIENTS = 4


def one_run(extra: list[str], reviews: int) -> tuple[float, float, float, int]:
    """(reviews/s, p50 ms, p99 ms, audit lines written) of one server."""
    with tempfile.TemporaryDirectory() as tmp:
        handle = start_server([POLICIES], Path(tmp), extra)
        try:
            review = admission_review(pv("pv-safe", mount_options=["nfsvers=4.0"]))
            for _ in range(50):  # warm-up
                post_review(handle, review)
            data = json.dumps(review).encode()

            def client(_: int) -> list[float]:
                session = requests.Session()
                session.verify, session.trust_env = str(handle.ca_crt), False
                latencies = []
                for _ in range(reviews // CLIENTS):
                    started = time.perf_counter()
                    answer = session.post(
                        handle.url("/mutate"),
                        data=data,
                        headers={"Content-Type": "application/json"},
                        timeout=30,
                    )
                    answer.raise_for_status()
                    latencies.append(time.perf_counter() - started)
                return latencies

            started = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                latencies = sorted(x for part in pool.map(client, range(CLIENTS)) for x in part)
            wall = time.perf_counter() - started
            lines = len(handle.audit_records())  # every worker's chain
        finally:
            handle.stop()
    p99 = latencies[int(len(latencies) * 0.99)]
    return len(latencies) / wall, statistics.median(latencies) * 1e3, p99 * 1e3, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, float, int]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        runs["off"].append(one_run([], args.reviews))
        runs["on"].append(one_run(["--audit-compliant"], args.reviews))
    for name, rows in runs.items():
        for rate, p50, p99, lines in rows:
            print(
                f"{name}: {rate:.0f} reviews/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {lines} records"
            )
        print(
            f"{name}: median {statistics.median(r[0] for r in rows):.0f} reviews/s, "
            f"p50 {statistics.median(r[1] for r in rows):.2f} ms"
        )


if __name__ == "__main__":
    main()
