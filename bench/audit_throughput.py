"""Recorded decisions per second through the real audit writer (write + fsync, a chain each).

    .venv/bin/python -m bench.audit_throughput [--records 2000] [--repeats 5] [--dir DIR]
        [--write-doc docs/audit.md]

Each set-up writes real decision records (the shape the server records) to a
fresh log in DIR (default: a temporary directory) from P processes x T
threads, each process with its own AuditWriter as gunicorn workers have, with
an Ed25519 checkpoint every 1000 records. The figure is the total of records
over the wall time from the first to the last record; latency is per
``record`` call. The chain is verified after each run. A raw ``write+fsync``
loop on the same file system is measured too: it is the floor the writer
pays per record.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.api.decision import Action, Decision, Outcome, RuleRef, Target
from webhook.api.review import AdmissionRequest, UserInfo
from webhook.audit.chain_file import slot_chains
from webhook.audit.signing import generate, key_id, load_public_key, load_signer
from webhook.audit.verify import Verifier, Where, iter_lines
from webhook.audit.writer import AuditWriter
from webhook.nfs.options import EffectiveVersion, VersionKind

BEGIN = "<!-- bench:audit_throughput -->"
END = "<!-- /bench:audit_throughput -->"


def _decision() -> Decision:
    ref = RuleRef("site-rules", "2026.11.27-1", "sha256:" + "5a" * 32, "incident-pin", Action.PIN)
    return Decision(
        outcome=Outcome.MUTATED,
        target=Target("PersistentVolume", "pv", "in-tree-nfs", "192.168.100.7", "/data1/k8s"),
        deciding=ref,
        matched=(ref,),
        before=EffectiveVersion(VersionKind.EXPLICIT, "4.2", ("nfsvers=4.2",)),
        after=EffectiveVersion(VersionKind.EXPLICIT, "4.0", ("nfsvers=4.0",)),
        patch=({"op": "replace", "path": "/spec/mountOptions", "value": ["nfsvers=4.0"]},),
        message='rule "incident-pin" pinned nfsvers=4.0 for 192.168.100.7:/data1/k8s',
        warnings=("nfsguard: nfsvers=4.2 -> nfsvers=4.0 by rule incident-pin",),
    )


def _request(uid: str) -> AdmissionRequest:
    return AdmissionRequest(
        uid=uid,
        kind="PersistentVolume",
        resource="persistentvolumes",
        operation="CREATE",
        name=f"pv-{uid}",
        object={},
        user=UserInfo("kubernetes-admin", groups=("system:masters", "system:authenticated")),
    )


def _worker(
    path: str, key: str, ident: int, threads: int, count: int, start: Any, out: Any
) -> None:
    writer = AuditWriter(
        path, signer=load_signer(key), checkpoint_every=1000, checkpoint_interval=0
    )
    decision = _decision()
    latencies: list[float] = []
    lock = threading.Lock()

    def run(thread: int) -> None:
        mine = []
        for i in range(count):
            t0 = time.perf_counter()
            writer.record(_request(f"{ident}-{thread}-{i}"), decision)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    start.wait()
    began = time.time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ended = time.time()
    fsyncs = writer.fsyncs
    writer.close()
    out.put((began, ended, latencies, fsyncs))


@dataclass
class Result:
    processes: int
    threads: int
    records: int
    per_second: float
    p50_ms: float
    p99_ms: float
    per_fsync: float


def run_setup(directory: Path, key: Path, processes: int, threads: int, total: int) -> Result:
    log = directory / f"audit-{processes}x{threads}.log"
    per_thread = max(1, total // (processes * threads))
    ctx = mp.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(str(log), str(key), p, threads, per_thread, start, out))
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # all writers open
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"worker exited with {p.exitcode}")
    began = min(r[0] for r in results)
    ended = max(r[1] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    records = len(latencies)
    _check_chain(log, key, records)
    return Result(
        processes,
        threads,
        records,
        records / (ended - began),
        statistics.median(latencies) * 1000,
        latencies[int(len(latencies) * 0.99) - 1] * 1000,
        records / sum(r[3] for r in results),
    )


def _check_chain(log: Path, key: Path, records: int) -> None:
    """Every writer's chain (a slot each) verifies; together they hold every record."""
    public = load_public_key(str(key))
    decisions = 0
    for _live, files in slot_chains(str(log)):
        verifier = Verifier({key_id(public): public})
        for name in files:
            with open(name, "rb") as handle:
                for number, raw, terminated in iter_lines(handle):
                    verifier.feed(Where(name, number), raw, terminated)
        report = verifier.finish()
        if report.exit_code != 0:
            raise RuntimeError(f"benchmark log does not verify: {report.summary()}")
        decisions += report.decisions
    if decisions != records:
        raise RuntimeError(f"benchmark logs hold {decisions} decisions, not {records}")


def raw_fsync(directory: Path, count: int = 2000) -> float:
    """write(512 bytes) + fsync per iteration, per second, on the same file system."""
    fd = os.open(directory / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    data = b"x" * 511 + b"\n"
    try:
        t0 = time.perf_counter()
        for _ in range(count):
            os.write(fd, data)
            os.fsync(fd)
        return count / (time.perf_counter() - t0)
    finally:
        os.close(fd)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0))
    return f"{os.cpu_count()} CPUs (nproc {nproc}), {model}, {platform.platform()}"


def filesystem(directory: Path) -> str:
    best = ("", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount, fstype = parts[1], parts[2]
            if str(directory.resolve()).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, fstype)
    except OSError:
        pass
    return f"{best[1]} (mounted on {best[0] or '?'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="records per set-up")
    parser.add_argument("--repeats", type=int, default=5, help="runs of every set-up")
    parser.add_argument("--dir", type=Path, help="where the logs go (default: a temp dir)")
    parser.add_argument("--write-doc", type=Path, help="replace the figures in this markdown")
    args = parser.parse_args()
    setups = ((1, 1), (1, 4), (2, 4))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        key = directory / "audit.key"
        generate(str(key), str(directory / "audit.pub"))
        floors: list[float] = []
        runs: dict[tuple[int, int], list[Result]] = {s: [] for s in setups}
        for repeat in range(args.repeats):  # interleaved, so that noise hits every set-up
            floors.append(raw_fsync(directory))
            for p, t in setups:
                sub = directory / f"r{repeat}"
                sub.mkdir(exist_ok=True)
                runs[(p, t)].append(run_setup(sub, key, p, t, args.records))
        fs = filesystem(directory)
    load_after = os.getloadavg()[0]
    lines = [
        f"Machine: {machine()}; log on {fs}; load average {load_before:.1f} before, "
        f"{load_after:.1f} after; {time.strftime('%Y-%m-%d', time.gmtime())}, "
        f"`python -m bench.audit_throughput --records {args.records} --repeats {args.repeats}`.",
        "",
        "| processes x threads | records per run | records/s, median (min..max) "
        "| p50 ms | p99 ms | records per fsync |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for setup in setups:
        results = sorted(runs[setup], key=lambda r: r.per_second)
        mid = results[len(results) // 2]
        lines.append(
            f"| {setup[0]} x {setup[1]} | {mid.records} | {mid.per_second:,.0f} "
            f"({results[0].per_second:,.0f}..{results[-1].per_second:,.0f}) | "
            f"{mid.p50_ms:.2f} | {mid.p99_ms:.2f} | {mid.per_fsync:.2f} |"
        )
    floors.sort()
    lines += [
        "",
        "Raw `write(512 B) + fsync` loop on the same file system, same runs: "
        f"median {floors[len(floors) // 2]:,.0f}/s ({floors[0]:,.0f}..{floors[-1]:,.0f}).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_doc:
        doc = args.write_doc.read_text()
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
        if not pattern.search(doc):
            raise SystemExit(f"{args.write_doc}: no {BEGIN} ... {END} section")
        args.write_doc.write_text(pattern.sub(lambda _m: f"{BEGIN}\n{text}\n{END}", doc))


if __name__ == "__main__":
    main()
