"""What the serving worker (webhook/server/worker.py) costs against gunicorn's plain
gthread worker, and what stalled clients do to it, measured interleaved in one run.

    .venv/bin/python -m bench.worker_ab [--rounds 3] [--stalled 64]

Three servers of the same 100-rule policy, 2 workers x 4 threads, over TLS on
127.0.0.1: ``guarded`` (as ``nfsguard serve`` runs), ``gthread`` (the same with
gunicorn's gthread worker), and ``guarded`` again while ``--stalled`` clients keep
connections open that send half their headers or half their body and stall (reopened
as the server closes them). Each round: wrk saturation (8 keep-alive connections) and
bench.paced at a fixed rate (latency from the scheduled time). gthread is not measured
with stalled clients: 8 of them stop it (issue 17). A benchmark: nothing asserts.

``python -m bench.worker_ab --serve-gthread ARGS`` is ``nfsguard serve ARGS`` on gthread.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from bench.paced import client_context
from bench.run import BIN, HOST, Server, free_port, load1, pace, saturate, served, wait_for_quiet
from bench.workload import review_body, write_policy


def serve_gthread(argv: list[str]) -> None:
    from webhook.cli.main import cli
    from webhook.server import runner

    runner.WORKER_CLASS = "gthread"
    cli.main(["serve", *argv], prog_name="nfsguard")


class Stallers:
    """``count`` connections that stall mid-request, kept open until stopped."""

    def __init__(self, port: int, ca: Path, count: int) -> None:
        self.port, self.count = port, count
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> socket.socket:
        conn = self.ctx.wrap_socket(
            socket.create_connection((HOST, self.port), timeout=10), server_hostname=HOST
        )
        if i % 2:
            conn.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
        else:
            conn.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
        conn.setblocking(False)
        return conn

    def _run(self) -> None:
        held: list[socket.socket] = []
        i = 0
        while not self.stop.is_set():
            alive = []
            for conn in held:
                try:
                    gone = conn.recv(4096) == b""
                except (BlockingIOError, ssl.SSLWantReadError):
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    conn.close()
                else:
                    alive.append(conn)
            held = alive
            while len(held) < self.count:
                try:
                    held.append(self._open(i))
                except OSError:
                    break
                i += 1
            self.stop.wait(0.1)
        for conn in held:
            conn.close()

    def __enter__(self) -> Stallers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--serve-gthread"]:
        serve_gthread(args_in[1:])
        return 0
    ap = argparse.ArgumentParser(description="serving worker vs gthread, and stalled clients")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--stalled", type=int, default=64)
    args = ap.parse_args(args_in)
    with tempfile.TemporaryDirectory(prefix="nfsguard-worker-ab-") as tmp:
        work = Path(tmp)
        from webhook.pki import ensure_dev_tls

        tls = work / "tls"
        ensure_dev_tls(tls)
        ca = tls / "ca.crt"
        ctx = client_context(ca)
        body = review_body()
        body_file = work / "review.json"
        body_file.write_bytes(body)
        policy = write_policy(work / "policies", 100)
        common = ["--policy", str(policy), "--tls-dir", str(tls), "--workers", "2"]
        launch = {
            "guarded": [str(BIN / "nfsguard"), "serve"],
            "gthread": [str(BIN / "python"), "-m", "bench.worker_ab", "--serve-gthread"],
        }
        servers: dict[str, Server] = {}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds} (load {wait_for_quiet(1.5, 30):.2f})")
            for name in ("guarded", "gthread", f"guarded+{args.stalled}-stalled"):
                kind = name.split("+")[0]
                port = free_port()
                argv = [*launch[kind], *common, "--port", str(port)]
                stalled = args.stalled if "stalled" in name else 0
                with (
                    served(name, argv, port, work, ctx, 60) as server,
                    Stallers(port, ca, stalled),
                ):
                    saturate(server, body_file, args.seconds, 8)
                    pace(server, body, args.rate, args.seconds, 8, ca)
                total = servers.setdefault(name, server)
                if total is not server:
                    total.rps += server.rps
                    total.paced_p50 += server.paced_p50
                    total.paced_p99 += server.paced_p99
                    total.errors += server.errors
        print(f"\n{'server':24s} {'reviews/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} errors")
        for name, s in servers.items():
            print(
                f"{name:24s} {statistics.median(s.rps):10.0f} "
                f"{statistics.median(s.paced_p50):8.3f} {statistics.median(s.paced_p99):8.3f} "
                f"{s.errors}  (rounds: {[round(x) for x in s.rps]})"
            )
        print(f"load at the end {load1():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
