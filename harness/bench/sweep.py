"""Scaling benchmark of the sweep: what the shared cache and a second worker buy.

``python -m harness.bench.sweep`` runs one suite, 6 methods x didactic-r1 x 3 seeds on ``tiny:nano``
(sft, dpo(beta=0.05), dpo(beta=0.2), ipo, pref-ft, online-dpo), three times, each in a fresh results
folder and a fresh cache:

1. ``no cache, jobs 1``: the cells one by one, every cell computing its own warm start, reference
   log-probs and samples (the sweep's machinery with the cache turned off, so only the cache differs);
2. ``cache, jobs 1``: the same cells one by one with the cache (cells that share a prefix reuse it);
3. ``cache, jobs 2``: two worker processes.

It prints the wall time of each, the time summed over cells per phase (load and warm start, training,
evaluation: the cache shortens the first two; under a varying load the training time varies too),
the ratio no-cache / cache, the jobs-2 speed-up, the cache hits and the 1-minute load average before
and after each run (the machine may be shared: read the times with it), and checks that the three
leaderboards are identical. Every worker uses ``--threads`` torch
threads (default 1). Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SUITE = """\
name = "bench-sweep"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
seeds = [0, 1, 2]
[train]
rounds = 1
steps = {steps}
batch_size = 16
[methods.sft]
[methods.dpo]
[methods.dpo.grid]
beta = [0.05, 0.2]
[methods.ipo]
[methods.pref-ft]
[methods.online-dpo]
n = 4
[methods.online-dpo.train]
rounds = 2
steps = {half}
[leaderboard]
metrics = ["expected_reward", "kl_ref"]
baseline = "sft"
"""


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_config(name: str, suite_file: Path, root: Path, *, cache: bool, jobs: int, threads: int,
               verbose: bool) -> dict[str, Any]:
    """One sweep of the suite in a fresh store and cache; returns its timings, cache counts, leaderboard."""
    from harness.core.plugins import get_host
    from harness.results.leaderboard import build, to_json
    from harness.suite.expand import load_suite
    from harness.sweeps.local_executor import LocalExecutor
    from harness.sweeps.store import Store
    from harness.sweeps.sweep import run_sweep

    folder = root / name.replace(" ", "_").replace(",", "")
    folder.mkdir(parents=True)
    suite = load_suite(suite_file, get_host(), [])
    load_before = _load()
    t0 = time.perf_counter()
    with Store(folder / "harness.db") as store:
        summary = run_sweep(suite, store, LocalExecutor(jobs), threads=threads,
                            cache=str(folder / "cache") if cache else "off",
                            log=(lambda m: print(f"  {m}", flush=True)) if verbose else (lambda m: None))
        wall = time.perf_counter() - t0
        board = to_json(build(store, suite.id))
        cells = store.cells(suite.id)
        cell_s = [c["wall_s"] or 0.0 for c in cells]
        phases = {k: sum(float((c["timings"] or {}).get(k, 0.0)) for c in cells) for k in ("load_s", "train_s", "eval_s")}
    if summary.failed:
        raise SystemExit(f"{name}: {summary.failed} cells failed: {summary.failures}")
    return {"name": name, "cache": cache, "jobs": jobs, "cells": summary.cells, "wall_s": wall,
            "cell_s_sum": sum(cell_s), "phases": phases, "warm_start": summary.warm_start, "hits": summary.cache,
            "load_before": load_before, "load_after": _load(), "leaderboard": board}


def _values(board: dict[str, Any]) -> dict[str, Any]:
    return {(r["method"], k): c["values"] for r in board["rows"] for k, c in r["cells"].items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m harness.bench.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=50, help="training steps per cell (default 50)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    ap.add_argument("--jobs", type=int, default=2, help="workers of the parallel run (default 2)")
    ap.add_argument("--root", type=Path, default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the sweeps' lines")
    args = ap.parse_args(argv)

    from harness.sweeps.local_executor import prestart

    prestart()
    root = args.root or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    suite_file = root / "bench.toml"
    suite_file.write_text(SUITE.format(steps=args.steps, half=max(1, args.steps // 2)))
    print(f"suite: 6 methods x didactic-r1 x 3 seeds = 18 cells on tiny:nano, {args.steps} steps per cell, "
          f"{args.threads} torch thread(s) per worker; {os.cpu_count()} cores; folder {root}", flush=True)
    results = []
    for name, cache, jobs in (("no cache, jobs 1", False, 1), ("cache, jobs 1", True, 1),
                              (f"cache, jobs {args.jobs}", True, args.jobs)):
        print(f"running: {name} ...", flush=True)
        r = run_config(name, suite_file, root, cache=cache, jobs=jobs, threads=args.threads, verbose=args.verbose)
        results.append(r)
        ws, hits = r["warm_start"], r["hits"]
        ph = r["phases"]
        print(f"  {r['wall_s']:.1f} s wall; summed over cells: {r['cell_s_sum']:.1f} s = load and warm start "
              f"{ph['load_s']:.1f} s + training (incl. reference log-probs, samples) {ph['train_s']:.1f} s + eval "
              f"{ph['eval_s']:.1f} s + process start; warm start "
              f"{ws['hit']} hits / {ws['miss']} misses; reference log-probs "
              f"{hits.get('reflogps', {}).get('hits', 0)} hits / {hits.get('reflogps', {}).get('misses', 0)} misses; "
              f"samples {hits.get('samples', {}).get('hits', 0)} hits / {hits.get('samples', {}).get('misses', 0)} "
              f"misses; load average {r['load_before']:.2f} -> {r['load_after']:.2f}", flush=True)
    base, cached, parallel = results
    same = _values(base["leaderboard"]) == _values(cached["leaderboard"]) == _values(parallel["leaderboard"])
    out = {
        "steps": args.steps, "threads": args.threads, "jobs": args.jobs, "cores": os.cpu_count(),
        "runs": [{k: v for k, v in r.items() if k != "leaderboard"} for r in results],
        "ratio_nocache_over_cache": base["wall_s"] / cached["wall_s"],
        "speedup_jobs": cached["wall_s"] / parallel["wall_s"],
        "identical_results": same,
    }
    print("")
    print(f"no cache / cache (both jobs 1): {base['wall_s']:.1f} s / {cached['wall_s']:.1f} s = "
          f"{out['ratio_nocache_over_cache']:.2f}x")
    print(f"jobs 1 / jobs {args.jobs} (both cached): {cached['wall_s']:.1f} s / {parallel['wall_s']:.1f} s = "
          f"{out['speedup_jobs']:.2f}x speed-up")
    print(f"leaderboards identical across the three runs: {'yes' if same else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
