"""What a cell pays to start in a fresh worker process against a reused one (issue 17, item 2).

``python -m harness.bench.workers`` runs the same cells (``tiny:nano`` on the CPU unless ``--model``,
``--device`` or ``--dtype`` say otherwise; one method, sft unless ``--method``, on didactic-r1; ``--seeds``
seeds; the cache off: the cells differ only in their seed) through the local executor one at a time,
alternating ``--no-reuse-workers`` (one fresh process per cell, forked from the fork server) and
``--reuse-workers`` (one process, cell after cell), ``--repeats`` times each, the order swapped every repeat.
For every cell it takes the time from its submission to the end of its first training step (``first_step_at``
in its outcome) and prints, per mode, the median over repeats of: the first cell, the later cells (mean), and
the ratios. Also checks that both modes computed the same losses. On a GPU the first cell would also pay
CUDA's set-up (context, cuBLAS, kernels, graphs); here only what a CPU process pays (plugin imports, the first
forward and backward's kernels and allocations). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SUITE = """\
name = "bench-workers"
models = ["{model}"]
benchmarks = ["didactic-r1"]
seeds = {seeds}
device = "{device}"
dtype = "{dtype}"
[train]
steps = {steps}
batch_size = 8
[benchmark_params.didactic-r1]
n_states = 4
warm_steps = 3
[methods.{method}]
"""


def run_once(suite: Any, folder: Path, *, reuse: bool, threads: int) -> list[dict[str, Any]]:
    """Run every cell of ``suite`` one at a time; per cell: seconds from submission to its first step,
    its worker and its step losses."""
    from harness.sweeps.executors import Task
    from harness.sweeps.local_executor import LocalExecutor
    from harness.sweeps.store import owner_token

    ex = LocalExecutor(1, reuse=reuse)
    rows = []
    try:
        for c in suite.cells:
            task = Task(id=c.id, base_id=c.base_id, config=c.config.to_dict(), cell_dir=str(folder / c.id),
                        threads=threads, cache="off", resume=False, sweep_owner=owner_token())
            t0 = time.time()
            ex.submit(task)
            got: list[tuple[str, dict[str, Any]]] = []
            while not got:
                got = ex.poll(1.0)
            outcome = got[0][1]
            if outcome.get("status") != "done":
                raise SystemExit(f"cell {c.id} failed: {outcome.get('error')}")
            rows.append({"cell": c.id, "to_first_step_s": outcome["first_step_at"] - t0, "wall_s": time.time() - t0,
                         "worker": outcome["worker"],
                         "losses": [s.get("loss") for s in outcome["record"]["steps"]]})
    finally:
        ex.close()
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m harness.bench.workers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="sft", help="the method of every cell (sft, dpo, ...)")
    ap.add_argument("--model", default="tiny:nano", help="any model a suite takes (a tiny: preset, a local path)")
    ap.add_argument("--device", default="cpu", help="the cells' device: cpu, cuda, auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--seeds", type=int, default=4, help="cells (one per seed)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)

    from harness.core.plugins import load
    from harness.suite.expand import load_suite
    from harness.sweeps.local_executor import prestart

    prestart()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        root = Path(tmp)
        path = root / "suite.toml"
        path.write_text(SUITE.format(seeds=list(range(args.seeds)), steps=args.steps, method=args.method,
                                   model=args.model, device=args.device, dtype=args.dtype))
        suite = load_suite(path, load())
        runs: dict[str, list[list[dict[str, Any]]]] = {"fresh": [], "reused": []}
        for r in range(args.repeats):
            order = [False, True] if r % 2 == 0 else [True, False]
            for reuse in order:
                folder = root / f"r{r}-{'reused' if reuse else 'fresh'}"
                runs["reused" if reuse else "fresh"].append(run_once(suite, folder, reuse=reuse, threads=args.threads))
    same = all(a["losses"] == b["losses"] for fa, ra in zip(runs["fresh"], runs["reused"], strict=True)
               for a, b in zip(fa, ra, strict=True))
    one_process = all(len({row["worker"]["pid"] for row in run}) == 1 for run in runs["reused"])
    summary: dict[str, Any] = {"cells": len(runs["fresh"][0]), "repeats": args.repeats, "same_losses": same,
                               "reused_in_one_process": one_process}
    for mode, rs in runs.items():
        first = statistics.median(run[0]["to_first_step_s"] for run in rs)
        later = statistics.median(statistics.mean(row["to_first_step_s"] for row in run[1:]) for run in rs)
        summary[mode] = {"first_cell_s": round(first, 3), "later_cells_s": round(later, 3),
                         "first_over_later": round(first / later, 2),
                         "per_repeat": [[round(row["to_first_step_s"], 3) for row in run] for run in rs]}
    summary["fresh_later_over_reused_later"] = round(
        summary["fresh"]["later_cells_s"] / summary["reused"]["later_cells_s"], 2)
    print(f"{summary['cells']} cells x {args.repeats} repeats (alternating), submission -> first training step, "
          f"median over repeats; load average {os.getloadavg()[0]:.1f}")
    for mode in ("fresh", "reused"):
        s = summary[mode]
        print(f"  {mode:6s}: first cell {s['first_cell_s']:.3f} s, later cells {s['later_cells_s']:.3f} s "
              f"(first / later {s['first_over_later']:.2f}x)  per repeat: {s['per_repeat']}")
    print(f"  later cells, fresh / reused: {summary['fresh_later_over_reused_later']:.2f}x; same losses: {same}; "
          f"reused cells in one process: {one_process}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
