"""A reused worker starts every cell from the same process state as a fresh one: a single-file plugin
flips process-wide settings at the end of each cell (default dtype, grad mode, anomaly mode,
deterministic algorithms, cuDNN flags, matmul precision, threads, RNGs, environment, warning filters) and
the cells after it compute the same numbers with and without --reuse-workers; a cell that changes what
cannot be put back in the same process (the interop thread count) gets its worker replaced."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.test_executors_reuse import comparable, outcomes
from tests.test_sweep import invoke, sweep_env

FLIPPER = '''\
"""An eval-only benchmark that leaves process-wide state changed behind it (as a careless plugin would)."""
import os
import random
import warnings

import numpy as np
import torch

from harness import BenchmarkSpec, EvalResult, MetricSpec, hookimpl


def evaluate(ctx):
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.autograd.set_detect_anomaly(True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = True
    torch.set_float32_matmul_precision("medium")
    torch.set_num_threads(2)
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    os.environ["HARNESS_TEST_FLIPPED"] = "1"
    warnings.simplefilter("error")
    if ctx.seed == 1:  # settable once per process: the worker cannot be put back and must be replaced
        torch.set_num_interop_threads(torch.get_num_interop_threads() + 1)
    return EvalResult({"flipped": 1.0}, [])


@hookimpl
def register_benchmarks(register):
    register(BenchmarkSpec(name="flipper", description="flips process-wide state", paper="-", evaluate=evaluate,
                           metrics=(MetricSpec("flipped", role="diagnostic"),)))
'''

SUITE = """\
name = "flips"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
eval = ["flipper"]
seeds = [0, 1]
threads = 1
[train]
steps = 3
batch_size = 4
eval_initial = false
[benchmark_params.didactic-r1]
n_states = 4
warm_steps = 3
[methods.sft]
[methods.dpo]
beta = 0.1
"""


def sweep(tmp_path, name, *args, monkeypatch, plugin):
    suite = tmp_path / f"{name}.toml"
    suite.write_text(SUITE)
    store = tmp_path / f"{name}.db"
    res = invoke("--plugin", str(plugin), "sweep", str(suite), "--store", str(store), "--cache", "off", *args,
                 env=sweep_env(tmp_path), monkeypatch=monkeypatch)
    return store, res


def test_a_cell_that_flips_process_state_does_not_change_the_next_cell_in_a_reused_worker(tmp_path, monkeypatch):
    plugin = tmp_path / "flipper.py"
    plugin.write_text(FLIPPER)
    fresh, res = sweep(tmp_path, "fresh", "--no-reuse-workers", monkeypatch=monkeypatch, plugin=plugin)
    assert res.exit_code == 0, res.output
    reused, res = sweep(tmp_path, "reused", "--reuse-workers", monkeypatch=monkeypatch, plugin=plugin)
    assert res.exit_code == 0, res.output
    a, b = outcomes(fresh), outcomes(reused)
    assert set(a) == set(b) and len(a) == 4
    assert all(o["status"] == "done" for o in [*a.values(), *b.values()]), [o.get("error") for o in b.values()]
    # seed 0's cells share a worker with the first seed-1 cell, which changes the interop thread count: that
    # worker is replaced, and so is the next one
    run = {(o["record"]["config"]["method"], o["record"]["config"]["seed"]): o for o in b.values()}
    order = [run[k]["worker"] for k in [("sft", 0), ("dpo", 0), ("sft", 1), ("dpo", 1)]]
    assert [w["cell"] for w in order] == [1, 2, 3, 1], order
    assert order[0]["pid"] == order[1]["pid"] == order[2]["pid"] != order[3]["pid"]
    assert [run[k].get("state_stuck") for k in [("sft", 0), ("dpo", 0), ("sft", 1), ("dpo", 1)]] == \
        [None, None, ["torch interop threads"], ["torch interop threads"]]
    for cid in a:  # every cell computed the same numbers as in a fresh process
        assert comparable(b[cid]["record"]) == comparable(a[cid]["record"]), cid
    reset = set(next(iter(b.values()))["state_reset"])
    assert {"default dtype", "grad mode", "anomaly mode", "deterministic algorithms", "float32 matmul precision",
            "cudnn.benchmark", "cudnn.deterministic", "torch threads", "environment", "warning filters"} <= reset


CHECK = textwrap.dedent('''\
    import json, os, random, warnings
    import numpy as np, torch
    from harness.sweeps import process_state as ps

    before = ps.capture()
    torch.set_default_dtype(torch.float64); torch.set_grad_enabled(False); torch.autograd.set_detect_anomaly(True)
    torch.use_deterministic_algorithms(True); torch.set_float32_matmul_precision("medium")
    torch.backends.cudnn.benchmark = True; torch.backends.cudnn.deterministic = True
    torch.set_num_threads(3); torch.manual_seed(5); np.random.seed(5); random.seed(5); torch.randn(3)
    os.environ["HARNESS_TEST_X"] = "1"; os.chdir("/"); warnings.simplefilter("error")
    changed, stuck = ps.restore(before)
    again = ps.restore(before)
    torch.set_num_interop_threads(torch.get_num_interop_threads() + 1)  # works once per process
    interop = ps.restore(before)
    print(json.dumps({"changed": changed, "stuck": stuck, "again": again, "interop": interop,
                      "x": os.environ.get("HARNESS_TEST_X"), "dtype": str(torch.get_default_dtype()),
                      "grad": torch.is_grad_enabled(), "error": any(f[0] == "error" for f in warnings.filters)}))
''')


def test_restore_puts_back_every_setting_and_names_what_it_cannot():
    import json

    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert {"default dtype", "grad mode", "anomaly mode", "deterministic algorithms", "float32 matmul precision",
            "cudnn.benchmark", "cudnn.deterministic", "torch threads", "torch RNG", "numpy RNG", "python RNG",
            "environment", "working directory", "warning filters"} <= set(got["changed"])
    assert got["stuck"] == [] and got["again"] == [[], []]  # all put back; nothing left to do the second time
    assert (got["x"], got["dtype"], got["grad"], got["error"]) == (None, "torch.float32", True, False)
    assert got["interop"] == [["torch interop threads"], ["torch interop threads"]]  # so the worker is replaced
