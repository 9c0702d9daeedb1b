"""The trained model as a result, checkpoints removed when done, one results root, resume inside a round."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from harness.cell.run import CellConfig, resolve, run_cell
from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.models.loading import load_model

QUIET = {"progress": False, "log": lambda m: None}
BENCH = {"n_states": 4, "warm_steps": 5}


@pytest.fixture(scope="module")
def host():
    return load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,didactic,engines"})


def cell_of(host, method="dpo", **train):
    return resolve(CellConfig(model="tiny:nano", method=method, benchmark="didactic-r1", benchmark_params=BENCH,
                              train={"steps": 3, "batch_size": 4, **train}), host)


def test_save_model_merged_loads_back_with_the_trained_weights(host, tmp_path):
    out = tmp_path / "cell"
    record = run_cell(cell_of(host, "sft", save_model="merged"), host, out_dir=out, **QUIET)
    assert record["model_dir"] == str(out / "model") and (out / "model" / "config.json").exists()
    assert not (out / "checkpoint").exists()  # removed once the run finished
    reloaded = load_model(str(out / "model")).model
    fresh = load_model("tiny:nano", seed=0).model
    trained = dict(reloaded.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in fresh.named_parameters())  # not the initial weights
    # a rerun of the finished cell returns its record without training again
    again = run_cell(cell_of(host, "sft", save_model="merged"), host, out_dir=out, **QUIET)
    assert again["final"] == record["final"]


def test_lora_adapters_or_merged_and_adapters_need_lora(host, tmp_path):
    run_cell(cell_of(host, "sft", lora=True, save_model="adapters", keep_checkpoint=True), host,
             out_dir=tmp_path / "a", **QUIET)
    assert (tmp_path / "a" / "model" / "adapter_config.json").exists()
    assert (tmp_path / "a" / "checkpoint" / "checkpoint.pt").exists()  # kept on request
    run_cell(cell_of(host, "sft", lora=True, save_model="merged"), host, out_dir=tmp_path / "m", **QUIET)
    assert (tmp_path / "m" / "model" / "config.json").exists()
    assert not (tmp_path / "m" / "model" / "adapter_config.json").exists()
    with pytest.raises(HarnessError, match="save_model='adapters' needs train.lora=true"):
        cell_of(host, "sft", save_model="adapters")


def test_output_settings_do_not_change_the_cell_identity(host):
    base = cell_of(host).cell_id
    assert cell_of(host, save_model="merged", checkpoint_every=2, keep_checkpoint=True).cell_id == base
    assert cell_of(host, steps=4).cell_id != base


def test_resume_inside_a_round_ends_like_an_uninterrupted_run(host, tmp_path, monkeypatch):
    cell = cell_of(host, "dpo", steps=6, checkpoint_every=2)
    straight = run_cell(cell, host, out_dir=tmp_path / "a", **QUIET)

    import harness.training.trainer as train_mod

    original = train_mod.Trainer.save_checkpoint
    saved = []

    def die_after_step_4(self, finished_round, mid_round=None):
        original(self, finished_round, mid_round)
        saved.append(mid_round["step"] if mid_round else "end")
        if mid_round and mid_round["step"] == 4:
            raise KeyboardInterrupt  # killed right after the step-4 checkpoint

    monkeypatch.setattr(train_mod.Trainer, "save_checkpoint", die_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        run_cell(cell, host, out_dir=tmp_path / "b", **QUIET)
    assert saved == [2, 4]
    monkeypatch.setattr(train_mod.Trainer, "save_checkpoint", original)
    steps_run = []
    original_steps = train_mod.Trainer._steps

    def count(self, rnd, ctx, rows, ref, first=0):
        steps_run.append(first)
        return original_steps(self, rnd, ctx, rows, ref, first)

    monkeypatch.setattr(train_mod.Trainer, "_steps", count)
    lines: list[str] = []
    resumed = run_cell(cell, host, out_dir=tmp_path / "b", progress=False, log=lines.append)
    assert steps_run == [4]  # continued at step 4, not from step 0
    assert any("at step 4 of round 1" in line for line in lines)
    assert [s["loss"] for s in resumed["steps"]] == pytest.approx([s["loss"] for s in straight["steps"]], abs=1e-6)
    for k, v in straight["final"].items():
        assert resumed["final"][k] == pytest.approx(v, abs=1e-6), k


KILL_MID_ROUND = """
import json, os, signal, sys
from pathlib import Path
import harness.training.trainer as train_mod
from harness.core.plugins import load
from harness.cell.run import CellConfig, resolve, run_cell

original = train_mod.Trainer.save_checkpoint

def die_after_step_4(self, finished_round, mid_round=None):
    original(self, finished_round, mid_round)
    if mid_round and mid_round["step"] == 4:
        os.kill(os.getpid(), signal.SIGKILL)  # killed part-way through round 1, nothing evaluated yet

train_mod.Trainer.save_checkpoint = die_after_step_4
host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,didactic,engines"})
cell = resolve(CellConfig(**json.loads(sys.argv[1])), host)
run_cell(cell, host, out_dir=Path(sys.argv[2]), progress=False, log=lambda m: None)
"""


def test_a_run_killed_mid_round_without_an_initial_evaluation_resumes_with_the_same_rounds(host, tmp_path):
    """train.eval_initial=false with step checkpoints: a process killed (SIGKILL) part-way through round 1
    resumes from the step checkpoint and records exactly the rounds an uninterrupted run records; the step
    checkpoint's weights are never evaluated as "round 0"."""
    config = {"model": "tiny:nano", "method": "dpo", "benchmark": "didactic-r1", "benchmark_params": BENCH,
              "train": {"rounds": 2, "steps": 6, "batch_size": 4, "checkpoint_every": 2, "eval_initial": False}}
    cell = resolve(CellConfig(**config), host)
    straight = run_cell(cell, host, out_dir=tmp_path / "a", **QUIET)
    assert [r["round"] for r in straight["rounds"]] == [1, 2]

    import json

    out = tmp_path / "b"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", KILL_MID_ROUND, json.dumps(config), str(out)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr  # it died by the signal, at the step-4 checkpoint
    assert (out / "checkpoint").exists() and not (out / "rounds.json").exists()
    lines: list[str] = []
    resumed = run_cell(cell, host, out_dir=out, progress=False, log=lines.append)
    assert any("at step 4 of round 1" in line for line in lines), lines
    assert not any("checkpointed but not evaluated" in line for line in lines), lines
    assert [r["round"] for r in resumed["rounds"]] == [1, 2]
    assert json.loads((out / "rounds.json").read_text()) == resumed["rounds"]
    for want, got in zip(straight["rounds"], resumed["rounds"], strict=True):
        assert set(got["metrics"]) == set(want["metrics"])
        for k, v in want["metrics"].items():
            assert got["metrics"][k] == pytest.approx(v, abs=1e-6), (got["round"], k)


def test_one_results_root_and_cache_off_means_off(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_CACHE", "HARNESS_RESULTS", "HARNESS_HOME")}
    args = [sys.executable, "-m", "harness.cli", "--results", str(tmp_path / "home"), "run", "--method", "dpo",
            "--benchmark", "didactic-r1", "--set", "train.steps=1", "--set", "n_states=2", "--set", "warm_steps=2",
            "--quiet", "--threads", "1"]
    res = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["cache", "harness.db", "runs"]  # run: its store too
    assert (tmp_path / "home" / "cache" / "warmstart").is_dir()
    assert not (tmp_path / "results").exists()  # nothing in the current directory
    loud = [a for a in args if a != "--quiet"]  # --quiet hides the cache line
    res = subprocess.run([*loud, "--no-resume"], capture_output=True, text=True, env={**env, "HARNESS_CACHE": "off"},
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "off").exists() and "cache: off" in res.stderr
