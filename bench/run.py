"""`make bench`: nfsguard against a floor, served the same way, in the same run.

(Over 400 lines: servers, the paced and wrk loops and the report of one run.)

    .venv/bin/python -m bench.run [--rounds 3] [--served-rules 100,10000] [--baseline DIR]
                                  [--doc docs/performance.md] [--json out.json]

1. Engine scaling in-process (bench.engine_scaling): ``Engine.decide`` for 10 to 10,000
   rules, only a few of which can match the object.
2. Served: the floor (bench.floor: a static "allowed" answer from Flask on nfsguard's
   own gunicorn configuration), nfsguard as the install runs it (``shipped-N``:
   bench.shipped, the Deployment's own arguments: the chart's policies plus an N-rule
   site policy, the audit log with signed checkpoints and its stdout copy, metrics),
   the same without the audit trail (``no-audit-N``, labelled; not how it is
   installed), all over TLS on 127.0.0.1, and a bare floor (``bench.floor --bare``: the
   same answer from a plain WSGI function, no Flask; shown, not compared with),
   measured interleaved round after round:
     - saturation: wrk, 1 thread, 8 keep-alive connections, reviews/s (bench/review.lua);
     - latency at a fixed 200 reviews/s: bench.paced (8 keep-alive connections, latency
       from the scheduled send time), p50/p99;
     - server CPU per review (all gunicorn processes, from /proc) during saturation.
3. Prints the figures, the ratios against the targets, and (``--doc``) rewrites the
   results block of docs/performance.md.

Needs wrk (hack/bench-deps.sh installs it; `make bench` calls it). Loopback only; every
loop is bounded in requests and time. A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import engine_scaling
from bench.paced import Connection, client_context, percentile, request_bytes, run_paced
from bench.shipped import shipped_argv
from bench.workload import review_body, write_policy

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LUA = REPO / "bench" / "review.lua"
HOST = "127.0.0.1"
PATH = "/mutate?timeout=10s"
BEGIN, END = "<!-- bench:run:begin -->", "<!-- bench:run:end -->"

#: Issue 20's targets for the shipped configuration, against the floor in the same run.
TARGET_P50 = 1.2
TARGET_P99 = 1.5
TARGET_RPS_VS_FLOOR = 0.9
#: The 10,000-rule site policy's p50 against the 100-rule one's.
TARGET_RULES = 1.05


# ------------------------------------------------------------------ machine


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load1() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(limit: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) for the 1-minute load to drop under ``limit``."""
    deadline = time.monotonic() + max_wait
    while load1() > limit and time.monotonic() < deadline:
        time.sleep(5)
    return load1()


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out.extend(int(c) for c in text)
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (gunicorn master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    wrk_p50: list[float] = field(default_factory=list)
    wrk_p99: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    paced_p50: list[float] = field(default_factory=list)
    paced_p99: list[float] = field(default_factory=list)
    errors: int = 0


def _wait_ready(
    port: int, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes], limit: float
) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            conn = Connection(HOST, port, ctx, 2.0)
            status, _ = conn.exchange(
                f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
            )
            conn.close()
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on port {port} not ready after {limit:.0f}s")


@contextmanager
def served(
    name: str, argv: list[str], port: int, workdir: Path, ctx: ssl.SSLContext, ready_s: float
) -> Iterator[Server]:
    log = workdir / f"{name}.log"
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tempfile.mkdtemp(prefix="prom-", dir=workdir)))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )
    server = Server(name, port, proc, log)
    try:
        try:
            _wait_ready(port, ctx, proc, ready_s)
        except RuntimeError:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # gunicorn master: graceful stop of its workers
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def check_answer(server: Server, ctx: ssl.SSLContext, body: bytes, expect_patch: bool) -> None:
    conn = Connection(HOST, server.port, ctx, 10.0)
    status, answer = conn.exchange(request_bytes(HOST, server.port, PATH, body))
    conn.close()
    review = json.loads(answer)
    response = review.get("response") or {}
    ok = (
        status == 200
        and review.get("apiVersion") == "admission.k8s.io/v1"
        and response.get("uid") == json.loads(body)["request"]["uid"]
        and response.get("allowed") is True
        and (("patch" in response) == expect_patch)
    )
    if not ok:
        raise RuntimeError(f"{server.name} answered {status}: {answer[:300]!r}")


# ------------------------------------------------------------------ load


def run_wrk(server: Server, body_file: Path, seconds: float, connections: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found: run hack/bench-deps.sh (make bench does)")
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        f"https://{HOST}:{server.port}{PATH}",
        "--",
        str(body_file),
    ]
    before = cpu_seconds(server.proc.pid)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    used = cpu_seconds(server.proc.pid) - before
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("BENCH "))
    stats: dict[str, Any] = json.loads(line[len("BENCH ") :])
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    stats["cpu_us_per_review"] = used / max(1, stats["requests"]) * 1e6
    stats["errors"] = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    return stats


def saturate(server: Server, body_file: Path, seconds: float, connections: int) -> None:
    stats = run_wrk(server, body_file, seconds, connections)
    server.rps.append(stats["rps"])
    server.cpu_us.append(stats["cpu_us_per_review"])
    server.wrk_p50.append(stats["p50_us"] / 1e3)
    server.wrk_p99.append(stats["p99_us"] / 1e3)
    server.errors += stats["errors"]
    print(
        f"  {server.name:14s} saturation {stats['rps']:7.0f}/s  "
        f"server cpu {stats['cpu_us_per_review']:5.0f} us/review  "
        f"errors {stats['errors']}  load {load1():.2f}",
        flush=True,
    )


def pace(
    server: Server, body: bytes, rate: float, seconds: float, connections: int, ca: Path
) -> None:
    r = run_paced(
        HOST, server.port, body, rate=rate, duration=seconds, connections=connections, ca_file=ca
    )
    server.latencies.extend(r.latencies)
    server.service.extend(r.service)
    p50, p99 = percentile(r.latencies, 50) * 1e3, percentile(r.latencies, 99) * 1e3
    server.paced_p50.append(p50)
    server.paced_p99.append(p99)
    server.errors += r.errors + r.bad_status
    print(
        f"  {server.name:14s} {rate:g}/s for {seconds:g}s  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  "
        f"answered {r.answered}/{r.scheduled}  errors {r.errors + r.bad_status}  "
        f"load {load1():.2f}",
        flush=True,
    )


# ------------------------------------------------------------------ report


def summary(server: Server) -> dict[str, Any]:
    return {
        "name": server.name,
        "rps_median": statistics.median(server.rps),
        "rps_rounds": [round(x) for x in server.rps],
        "cpu_us_median": statistics.median(server.cpu_us),
        "p50_ms": percentile(server.latencies, 50) * 1e3,
        "p99_ms": percentile(server.latencies, 99) * 1e3,
        "service_p50_ms": percentile(server.service, 50) * 1e3,
        "service_p99_ms": percentile(server.service, 99) * 1e3,
        "p50_rounds": [round(x, 3) for x in server.paced_p50],
        "p99_rounds": [round(x, 3) for x in server.paced_p99],
        "samples": len(server.latencies),
        "errors": server.errors,
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def served_table(floor: dict[str, Any], others: list[dict[str, Any]], rate: float) -> str:
    lines = [
        "| server | reviews/s at saturation | server CPU per review | "
        f"p50 at {rate:g}/s | p99 at {rate:g}/s | p50 / floor | p99 / floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in [floor, *others]:
        r50 = s["p50_ms"] / floor["p50_ms"]
        r99 = s["p99_ms"] / floor["p99_ms"]
        lines.append(
            f"| {s['name']} | {s['rps_median']:,.0f} | {s['cpu_us_median']:,.0f} us | "
            f"{s['p50_ms']:.2f} ms | {s['p99_ms']:.2f} ms | {r50:.2f} | {r99:.2f} |"
        )
    return "\n".join(lines)


def _per_round(main: list[float], floor: list[float]) -> str:
    return ", ".join(f"{m / f:.2f}" for m, f in zip(main, floor, strict=True))


def targets_table(
    floor: dict[str, Any], main: dict[str, Any], big: dict[str, Any] | None = None
) -> str:
    r50 = main["p50_ms"] / floor["p50_ms"]
    r99 = main["p99_ms"] / floor["p99_ms"]
    rps = main["rps_median"] / floor["rps_median"]
    p50s = _per_round(main["p50_rounds"], floor["p50_rounds"])
    p99s = _per_round(main["p99_rounds"], floor["p99_rounds"])
    rpss = _per_round(main["rps_rounds"], floor["rps_rounds"])
    lines = [
        f"| target ({main['name']}) | wanted | measured (all rounds) | | per round |",
        "|---|---:|---:|---|---|",
        f"| p50 at 200/s vs floor | <= {TARGET_P50}x | {r50:.2f}x | "
        f"{verdict(r50 <= TARGET_P50)} | {p50s} |",
        f"| p99 at 200/s vs floor | <= {TARGET_P99}x | {r99:.2f}x | "
        f"{verdict(r99 <= TARGET_P99)} | {p99s} |",
        f"| reviews/s at saturation vs floor | >= {TARGET_RPS_VS_FLOOR}x | {rps:.2f}x "
        f"({main['rps_median']:,.0f}/s, {main['errors']} errors) | "
        f"{verdict(rps >= TARGET_RPS_VS_FLOOR and main['errors'] == 0)} | {rpss} |",
    ]
    if big is not None:
        rb = big["p50_ms"] / main["p50_ms"]
        lines.append(
            f"| p50, {big['name']} vs {main['name']} | <= {TARGET_RULES}x | {rb:.2f}x | "
            f"{verdict(rb <= TARGET_RULES)} | "
            f"{_per_round(big['p50_rounds'], main['p50_rounds'])} |"
        )
    return "\n".join(lines)


def rounds_table(servers: list[dict[str, Any]]) -> str:
    lines = [
        "| server | saturation per round (reviews/s) | p50 per round (ms) | p99 per round (ms) |",
        "|---|---|---|---|",
    ]
    for s in servers:
        lines.append(
            f"| {s['name']} | {', '.join(f'{x:,}' for x in s['rps_rounds'])} | "
            f"{', '.join(f'{x:.2f}' for x in s['p50_rounds'])} | "
            f"{', '.join(f'{x:.2f}' for x in s['p99_rounds'])} |"
        )
    return "\n".join(lines)


def verify_audit(log: Path, public_key: Path) -> str:
    """`nfsguard audit verify --public-key` over the log's directory: every worker's
    chain with its rotated files (the last line: the last chain's verdict)."""
    done = subprocess.run(
        [
            str(BIN / "nfsguard"),
            "audit",
            "verify",
            "--public-key",
            str(public_key),
            str(log.parent),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    out = "; ".join(done.stdout.strip().splitlines()) or done.stderr.strip()
    return f"exit {done.returncode}, {out}"


def write_doc(doc: Path, block: str) -> None:
    text = doc.read_text() if doc.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{block.rstrip()}\n{END}{tail}")


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="nfsguard vs floor, served over TLS")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wrk-seconds", type=float, default=10.0)
    ap.add_argument("--wrk-connections", type=int, default=8)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--paced-seconds", type=float, default=15.0)
    ap.add_argument("--paced-connections", type=int, default=8)
    ap.add_argument("--served-rules", default="100,10000", help="comma-separated rule counts")
    ap.add_argument("--scaling-rules", default="10,100,1000,10000")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--quiet-load", type=float, default=1.5, help="wait for load1 below this")
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="but at most this long (s)")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="another checkout of nfsguard with its own .venv (e.g. a git worktree of an older "
        "commit): its `nfsguard serve` is served beside this one, round after round, and its "
        "engine scaling is measured in alternation with this checkout's",
    )
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--doc", type=Path, help="rewrite the results block of this markdown file")
    args = ap.parse_args(argv)

    subprocess.run([str(REPO / "hack" / "bench-deps.sh")], check=True)  # wrk, before any work
    info = machine()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"nfsguard bench {started}: {info}", flush=True)
    results: dict[str, Any] = {"started": started, "machine": info}
    results["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    scaling: list[dict[str, Any]] = []
    if not args.skip_scaling:
        counts = [int(x) for x in args.scaling_rules.split(",") if x]
        print("engine scaling (in-process Engine.decide):", flush=True)
        scaling = engine_scaling.measure(counts, echo=True)
        results["scaling"] = scaling
        if args.baseline is not None:
            print("engine scaling, this checkout vs --baseline (alternating runs):", flush=True)
            results["scaling_vs_baseline"] = scaling_vs_baseline(args.baseline, counts)

    rule_counts = [int(x) for x in args.served_rules.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="nfsguard-bench-") as tmp:
        work = Path(tmp)
        from webhook.pki import ensure_dev_tls

        tls = work / "tls"
        ensure_dev_tls(tls)
        ca = tls / "ca.crt"
        ctx = client_context(ca)
        body = review_body()
        body_file = work / "review.json"
        body_file.write_bytes(body)

        common = ["--workers", str(args.workers), "--threads", str(args.threads)]
        from webhook.audit.signing import generate

        audit_key, audit_pub = work / "audit.key", work / "audit.pub"
        generate(str(audit_key), str(audit_pub))
        specs: list[tuple[str, list[str], bool]] = [
            (
                "floor",
                [str(BIN / "python"), "-m", "bench.floor", "--tls-dir", str(tls), *common],
                False,
            )
        ]
        audit_logs: dict[str, Path] = {}
        site_policies = {n: write_policy(work / "policies", n) for n in rule_counts}
        for n, policy in site_policies.items():
            name = f"shipped-{n}"
            argv, audit_logs[name] = shipped_argv(
                BIN / "nfsguard", work, tls, audit_key, policy, name
            )
            specs.append((name, argv, True))
        for n, policy in site_policies.items():
            specs.append(
                (
                    f"no-audit-{n}",
                    [
                        str(BIN / "nfsguard"),
                        "serve",
                        "--policy",
                        str(policy),
                        "--tls-dir",
                        str(tls),
                        *common,
                    ],
                    True,
                )
            )
        if args.baseline is not None:
            baseline_bin = args.baseline.resolve() / ".venv" / "bin" / "nfsguard"
            for n, policy in site_policies.items():  # the baseline as shipped, too
                name = f"baseline-shipped-{n}"
                argv, audit_logs[name] = shipped_argv(
                    baseline_bin, work, tls, audit_key, policy, name
                )
                specs.append((name, argv, True))
            for n in rule_counts:
                policy = work / "policies" / f"bench-{n}.yaml"
                specs.append(
                    (
                        f"baseline-{n}",
                        [
                            str(baseline_bin),
                            "serve",
                            "--policy",
                            str(policy),
                            "--tls-dir",
                            str(tls),
                            *common,
                        ],
                        True,
                    )
                )
        # Last, so that the targets stay measured for nfsguard-N against the floor:
        # the bare floor is shown beside them, not compared with.
        specs.append(
            (
                "floor-bare",
                [
                    str(BIN / "python"),
                    "-m",
                    "bench.floor",
                    "--bare",
                    "--tls-dir",
                    str(tls),
                    *common,
                ],
                False,
            )
        )
        with _all_served(specs, work, ctx) as servers:
            for server, (_, _, patch) in zip(servers, specs, strict=True):
                check_answer(server, ctx, body, expect_patch=patch)
            print(f"servers up: {', '.join(f'{s.name}:{s.port}' for s in servers)}", flush=True)
            print("warm-up (not counted)", flush=True)
            for server in servers:
                run_wrk(server, body_file, 2, args.wrk_connections)
            quiet = wait_for_quiet(args.quiet_load, args.quiet_wait)
            print(f"load before measuring: {quiet:.2f}", flush=True)
            results["load_before"] = quiet
            loads = []
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else list(reversed(servers))
                print(f"round {r + 1}/{args.rounds}", flush=True)
                for server in order:
                    saturate(server, body_file, args.wrk_seconds, args.wrk_connections)
                    loads.append(load1())
                for server in order:
                    pace(server, body, args.rate, args.paced_seconds, args.paced_connections, ca)
                    loads.append(load1())
            results["load_during"] = {"min": min(loads), "max": max(loads)}
        # The promise kept under load: every review answered was recorded, and each
        # shipped server's chain verifies with the public key.
        results["audit"] = {name: verify_audit(log, audit_pub) for name, log in audit_logs.items()}
        for name, line in results["audit"].items():
            print(f"audit {name}: {line}", flush=True)

    summaries = [summary(s) for s in servers]
    results["served"] = summaries
    floor, others = summaries[0], summaries[1:]
    block = render(results, floor, others, scaling, args.rate)
    print()
    print(block)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.doc:
        write_doc(args.doc, block)
        print(f"\nwrote the results block of {args.doc}")
    return 0


@contextmanager
def _all_served(
    specs: list[tuple[str, list[str], bool]], work: Path, ctx: ssl.SSLContext
) -> Iterator[list[Server]]:
    servers: list[Server] = []
    stack: list[Any] = []
    try:
        for name, argv, _ in specs:
            port = free_port()
            cm = served(name, [*argv, "--host", HOST, "--port", str(port)], port, work, ctx, 120)
            servers.append(cm.__enter__())
            stack.append(cm)
        yield servers
    finally:
        for cm in reversed(stack):
            cm.__exit__(None, None, None)


def render(
    results: dict[str, Any],
    floor: dict[str, Any],
    others: list[dict[str, Any]],
    scaling: list[dict[str, Any]],
    rate: float,
) -> str:
    m = results["machine"]
    a = results["args"]
    loads = results.get("load_during", {})
    parts = [
        f"Run {results['started']} on {m['nproc']} x {m['cpu']}, {m['memory']}, "
        f"Linux {m['kernel']}, Python {m['python']}; load average (1 min) "
        f"{results.get('load_before', float('nan')):.2f} before, "
        f"{loads.get('min', float('nan')):.2f} to {loads.get('max', float('nan')):.2f} during "
        f"(the machine was shared). {a['rounds']} interleaved rounds; saturation: wrk -t1 "
        f"-c{a['wrk_connections']} for {a['wrk_seconds']:g} s; latency: {rate:g}/s for "
        f"{a['paced_seconds']:g} s over {a['paced_connections']} connections per round "
        f"({floor['samples']} samples per server); gunicorn gthread "
        f"{a['workers']} workers x {a['threads']} threads, TLS.",
        "",
    ]
    shipped = [s for s in others if s["name"].startswith("shipped-")]
    if shipped:
        big = shipped[-1] if len(shipped) > 1 else None
        parts += [targets_table(floor, shipped[0], big), ""]
    for name, line in results.get("audit", {}).items():
        parts.append(f"Audit trail of {name} after the run: {line}.")
    if results.get("audit"):
        parts.append("")
    parts += [served_table(floor, others, rate), "", rounds_table([floor, *others]), ""]
    if scaling:
        parts += [engine_scaling.table(scaling), ""]
    if results.get("scaling_vs_baseline"):
        parts += [baseline_scaling_table(results["scaling_vs_baseline"]), ""]
    return "\n".join(parts)


# ------------------------------------------------------------ against a baseline

_SCALING_LINE = re.compile(
    r"^\s*(?P<rules>\d+) rules: matched\s+(?P<matched>[\d.]+) us .*?"
    r"unmatched\s+(?P<unmatched>[\d.]+) us .*?policy load (?P<load>[\d.]+) s"
)


def _scaling_run(checkout: Path, counts: list[int]) -> dict[int, dict[str, float]]:
    """One `python -m bench.engine_scaling` of ``checkout``, in its own venv and process,
    read from the lines it prints (which every version of the bench prints alike)."""
    python = checkout / ".venv" / "bin" / "python"
    rules = ",".join(str(n) for n in counts)
    out = subprocess.run(
        [str(python), "-m", "bench.engine_scaling", "--rules", rules],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    ).stdout
    rows: dict[int, dict[str, float]] = {}
    for line in out.splitlines():
        m = _SCALING_LINE.match(line)
        if m:
            rows[int(m["rules"])] = {
                "matched_us": float(m["matched"]),
                "unmatched_us": float(m["unmatched"]),
                "load_s": float(m["load"]),
            }
    return rows


def scaling_vs_baseline(baseline: Path, counts: list[int], runs: int = 3) -> list[dict[str, Any]]:
    """Engine scaling of this checkout and of ``baseline``, each in a fresh process,
    alternating ``runs`` times so that a noisy moment hits both alike; medians per count."""
    samples: dict[str, list[dict[int, dict[str, float]]]] = {"this": [], "baseline": []}
    for _ in range(runs):
        for label, checkout in (("this", REPO), ("baseline", baseline.resolve())):
            samples[label].append(_scaling_run(checkout, counts))
    rows = []
    for n in counts:
        row: dict[str, Any] = {"rules": n}
        for label, runs_ in samples.items():
            for key in ("matched_us", "unmatched_us", "load_s"):
                row[f"{label}_{key}"] = statistics.median(r[n][key] for r in runs_)
        print(
            f"  {n:6d} rules: matched {row['this_matched_us']:.1f} vs "
            f"{row['baseline_matched_us']:.1f} us, unmatched {row['this_unmatched_us']:.1f} "
            f"vs {row['baseline_unmatched_us']:.1f} us, load {row['this_load_s']:.2f} vs "
            f"{row['baseline_load_s']:.2f} s",
            flush=True,
        )
        rows.append(row)
    return rows


def baseline_scaling_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| rules | decide, matched PV: this / baseline | decide, unmatched PV: this / baseline "
        "| policy load: this / baseline |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rules']:,} | {r['this_matched_us']:.1f} / {r['baseline_matched_us']:.1f} us "
            f"({r['this_matched_us'] / r['baseline_matched_us']:.2f}x) | "
            f"{r['this_unmatched_us']:.1f} / {r['baseline_unmatched_us']:.1f} us "
            f"({r['this_unmatched_us'] / r['baseline_unmatched_us']:.2f}x) | "
            f"{r['this_load_s']:.2f} / {r['baseline_load_s']:.2f} s "
            f"({r['this_load_s'] / r['baseline_load_s']:.2f}x) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
