"""Threads and devices: the default thread count, --threads on every computing command, provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.core.threads import apply_threads, default_threads, resolve_device
from tests.conftest import ROOT, run_harness


def test_default_threads_is_one_for_tiny_models_small_boxes_and_shared_cores():
    assert default_threads(1, model="tiny:nano", n_cores=64, load=0.0) == 1
    assert default_threads(1, model="smollm2-135m", n_cores=2, load=0.0) == 1  # a small box: measured 11x
    assert default_threads(1, model="smollm2-135m", n_cores=16, load=0.0) == 16
    assert default_threads(4, model="smollm2-135m", n_cores=16, load=0.0) == 4  # one share per worker
    assert default_threads(1, model="smollm2-135m", n_cores=16, load=12.0) == 4  # only the idle cores
    assert default_threads(1, model="smollm2-135m", n_cores=16, load=40.0) == 1


def test_apply_threads_sets_torch_and_rejects_negative():
    import torch

    from harness.core.errors import HarnessError

    assert apply_threads(2) == 2 and torch.get_num_threads() == 2
    assert apply_threads(None, model="tiny:nano") == 1 and torch.get_num_threads() == 1
    with pytest.raises(HarnessError, match="--threads -1"):
        apply_threads(-1)


def test_the_cli_and_the_fork_server_turn_openmp_spin_waiting_off_unless_set_and_import_harness_does_not():
    """The policy is the entry points' (the ``harness`` command, the sweep's fork server), set before torch loads."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    cli = ("import os, sys; sys.argv = ['harness', '--version']; from harness.cli import main; main(); "
           "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    server = ("import os, sys, harness; before = os.environ.get('OMP_WAIT_POLICY'); "
              "import harness.sweeps.forkserver_guard; print(before, os.environ.get('OMP_WAIT_POLICY'))")
    plain = "import os, harness, torch; from harness import MethodSpec; print(os.environ.get('OMP_WAIT_POLICY'))"
    for code, want in [(cli, "False PASSIVE"), (server, "None PASSIVE"), (plain, "None")]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
        assert out.stdout.strip().splitlines()[-1] == want, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "False ACTIVE"


def test_auto_device_is_cuda_only_when_there_is_one():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_run_eval_generate_take_threads_and_run_records_them(tmp_path):
    out = tmp_path / "cell"
    res = run_harness("run", "--model", "tiny:nano", "--method", "sft", "--benchmark", "didactic-r1",
                      "--set", "train.steps=2", "--set", "n_states=4", "--set", "warm_steps=2", "--quiet",
                      "--threads", "2", "--device", "auto", "--out", str(out))
    assert res.returncode == 0, res.stderr
    prov = json.loads((out / "record.json").read_text())["provenance"]
    assert prov["threads"]["torch_threads"] == 2 and prov["threads"]["omp_wait_policy"] == "PASSIVE"
    assert prov["device"] in ("cpu", "cuda")
    res = run_harness("eval", "--model", "tiny:nano", "--benchmark", "didactic-r1", "--set", "n_states=4",
                      "--threads", "1", "--device", "auto")
    assert res.returncode == 0, res.stderr
    res = run_harness("generate", "hi", "--model", "tiny:nano", "--max-new-tokens", "3", "--threads", "1",
                      "--device", "auto")
    assert res.returncode == 0, res.stderr
