"""How ``Engine.decide`` grows with rules that cannot match (in-process, no server).

    .venv/bin/python -m bench.engine_scaling [--rules 10,100,1000,10000]

For each rule count a generated policy (bench.workload: distinct exports, CIDRs, hosts,
provisioners and StorageClass names, a mix of actions) is loaded once, and two PVs are
decided many times:

  matched    the review's PV: 3 rules can match it (pin, audit on its /16, warn on its
             StorageClass), the pin decides and a patch is built and proven
  unmatched  the same PV on an export, class and provisioner no rule names

Reported: the median over repeats of the per-decision time, and how many rules the
index handed to the matcher (candidates). The index files every rule under what an
object must have for it to match, so only the few glob rules (bench.workload.GLOB_RULES,
constant) and the rules naming the object's own server, subnet, host, provisioner or
class are looked at, whatever the size of the policy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import timeit
from typing import Any

from bench.workload import policy_yaml, pv_object
from webhook.config.load import load
from webhook.engine.engine import Engine
from webhook.files import packaged
from webhook.nfs.patterns import parse_ip


def unmatched_object() -> dict[str, Any]:
    obj = copy.deepcopy(pv_object("pv-bench-unmatched"))
    obj["spec"]["nfs"] = {"server": "198.51.100.77", "path": "/elsewhere/x"}
    obj["spec"]["storageClassName"] = "unnamed-class"
    return obj


def _batch(fn: Any, number: int) -> float:
    """CPU seconds per call over ``number`` calls (process time: a shared machine's
    other work does not count, only this process's own)."""
    return timeit.Timer(fn, timer=time.process_time).timeit(number) / number


def _candidates(engine: Engine, obj: dict[str, Any]) -> int:
    target = engine.read(obj)
    if target is None:
        return 0
    server_ip = parse_ip(target.server) if target.server else None
    return len(engine._index.candidates(target, server_ip))


def measure(counts: list[int], *, rounds: int = 9, echo: bool = False) -> list[dict[str, Any]]:
    """Engines for every count are built first; then each round times a batch of
    decisions on every (engine, object) in turn, so that a noisy moment of a shared
    machine hits all counts alike. Per-decision time: the median over rounds."""
    objects = {"matched": pv_object(), "unmatched": unmatched_object()}
    engines: dict[int, Engine] = {}
    rows: dict[int, dict[str, Any]] = {}
    builtin, schemas = packaged.builtin_profiles(), packaged.schemas()  # read once, not timed
    for n in counts:
        text = policy_yaml(n)
        started = time.perf_counter()
        loaded = load([(f"bench-{n}.yaml", text)], builtin_profiles=builtin, schemas=schemas)
        engines[n] = Engine(loaded.checked().policies, loaded.profiles)
        rows[n] = {"rules": n, "load_s": time.perf_counter() - started}
        for label, obj in objects.items():
            decision = engines[n].decide(obj)
            rows[n][f"{label}_candidates"] = _candidates(engines[n], obj)
            rows[n][f"{label}_outcome"] = decision.outcome.value
            rows[n][f"{label}_matched"] = len(decision.matched)
    samples: dict[tuple[int, str], list[float]] = {
        (n, label): [] for n in counts for label in objects
    }
    for _ in range(rounds):
        for n in counts:
            engine = engines[n]
            for label, obj in objects.items():
                samples[(n, label)].append(_batch(lambda e=engine, o=obj: e.decide(o), 300))
    for (n, label), values in samples.items():
        rows[n][f"{label}_us"] = statistics.median(values) * 1e6
    if echo:
        for n in counts:
            row = rows[n]
            print(
                f"  {n:6d} rules: matched {row['matched_us']:6.1f} us "
                f"({row['matched_candidates']} candidates, {row['matched_outcome']}), "
                f"unmatched {row['unmatched_us']:6.1f} us "
                f"({row['unmatched_candidates']} candidates, {row['unmatched_outcome']}); "
                f"policy load {row['load_s']:.2f} s",
                flush=True,
            )
    return [rows[n] for n in counts]


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    lines = [
        "| rules | decide, matched PV | vs fewest rules | candidates | decide, unmatched PV "
        "| vs fewest rules | candidates | policy load + index (once per reload) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rules']:,} | {r['matched_us']:.1f} us | "
            f"{r['matched_us'] / base['matched_us']:.2f}x | {r['matched_candidates']} | "
            f"{r['unmatched_us']:.1f} us | {r['unmatched_us'] / base['unmatched_us']:.2f}x | "
            f"{r['unmatched_candidates']} | {r['load_s']:.2f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Engine.decide time against rule count")
    ap.add_argument("--rules", default="10,100,1000,10000")
    args = ap.parse_args(argv)
    rows = measure([int(x) for x in args.rules.split(",") if x], echo=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
