"""What one durable audit append costs on this disk, back to back and at the served rate.

    .venv/bin/python -m bench.flush [--appends 400] [--rounds 3] [--dir /var/tmp]

A shipped review is answered only after its record is on disk (docs/audit.md), so the
flush is the one part of the audit trail no code change removes. This measures it
with the real writer (:class:`webhook.audit.writer.AuditWriter`, a decision-sized
record, the ``fdatasync`` it waits for timed around the call) with the appends
back to back, 1 ms apart, and ``1/rate`` apart (5 ms: what `make bench`'s paced
client leaves between two reviews of one server at 200/s), the gaps interleaved
round after round so that the disk's busy minutes fall on all of them. The gap is
spent sleeping, as a worker between two reviews does. A benchmark, not a test:
nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from webhook.audit.writer import AuditWriter

#: about the size of a decision record of the bench's review (2.1 KB line)
BODY: dict[str, Any] = {"type": "decision", "time": "", "message": "x" * 1900}


@contextmanager
def timed_flushes() -> Iterator[list[float]]:
    """Every ``os.fdatasync`` the writer makes meanwhile, timed: the list of their
    durations in seconds (the flush a review waits for; bench.breakdown uses it too)."""
    flushes: list[float] = []
    real = os.fdatasync

    def timed(fd: Any) -> None:
        started = time.perf_counter()
        real(fd)
        flushes.append(time.perf_counter() - started)

    os.fdatasync = timed
    try:
        yield flushes
    finally:
        os.fdatasync = real


def _timed(writer: AuditWriter, appends: int, gap: float) -> tuple[list[float], list[float]]:
    """(append, of which fdatasync) seconds for ``appends`` appends ``gap`` apart."""
    totals: list[float] = []
    with timed_flushes() as flushes:
        for _ in range(appends):
            if gap:
                time.sleep(gap)
            started = time.perf_counter()
            writer.append(BODY)
            totals.append(time.perf_counter() - started)
    return totals, flushes


def _us(samples: list[float], q: float) -> str:
    ordered = sorted(samples)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e6:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--appends", type=int, default=400, help="per gap and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0, help="the paced rate of make bench")
    ap.add_argument("--dir", default="/var/tmp", help="a directory on the disk to measure")
    args = ap.parse_args(argv)
    gaps = {"back to back": 0.0, "1 ms apart": 0.001, f"1/{args.rate:g} s apart": 1 / args.rate}
    results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in gaps}
    with tempfile.TemporaryDirectory(prefix="nfsguard-flush-", dir=args.dir) as tmp:
        writer = AuditWriter(str(Path(tmp) / "audit.log"))
        try:
            _timed(writer, 50, 0.0)  # warm-up
            for r in range(args.rounds):
                names = list(gaps) if r % 2 == 0 else list(reversed(gaps))
                for name in names:
                    totals, flushes = _timed(writer, args.appends, gaps[name])
                    results[name][0].extend(totals)
                    results[name][1].extend(flushes)
        finally:
            writer.close()
    print(
        f"{args.rounds} rounds x {args.appends} appends per gap, {args.dir}, "
        f"load {os.getloadavg()[0]:.2f} after"
    )
    print("| appends | append p50 | p90 | p99 | of which fdatasync p50 |")
    print("|---|---:|---:|---:|---:|")
    for name, (totals, flushes) in results.items():
        print(
            f"| {name} | {_us(totals, 0.5)} us | {_us(totals, 0.9)} us | {_us(totals, 0.99)} us "
            f"| {statistics.median(flushes) * 1e6:,.0f} us |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
