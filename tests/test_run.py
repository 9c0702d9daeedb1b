"""`harness run` end to end: one cell trains, evaluates and writes its record."""

from __future__ import annotations

import json

import pytest
import torch

from harness.cell.run import CellConfig, resolve, run_cell
from harness.core.plugins import load
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.training.trainer import TrainConfig, Trainer
from tests.conftest import run_harness, toy_training_data

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # a tiny model: one torch thread is fastest (and far faster on a loaded box)


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_run_raises_expected_reward_on_didactic_r1(method, tmp_path):
    out = tmp_path / method
    res = run_harness("run", "--model", "tiny:nano", "--method", method, "--benchmark", "didactic-r1",
                      "--seed", "0", "--set", "train.steps=50", "--quiet", "--out", str(out), env=ONE_THREAD)
    assert res.returncode == 0, res.stderr
    record = json.loads((out / "record.json").read_text())
    first, last = record["rounds"][0]["metrics"], record["final"]
    assert abs(first["didactic-r1/expected_reward"] - 0.039) < 0.01  # the warm start fits pi_ref
    assert last["didactic-r1/expected_reward"] > first["didactic-r1/expected_reward"] + 0.05
    assert record["config"]["train"]["steps"] == 50
    assert len(record["steps"]) == 50 and "loss" in record["steps"][0]
    assert record["provenance"]["versions"]["torch"]
    assert "expected_reward" in res.stdout  # the final table


def test_run_rejects_bad_set_and_missing_data(tmp_path):
    from click.testing import CliRunner

    from harness.cli.app import cli

    res = CliRunner().invoke(cli, ["run", "--method", "dpo", "--benchmark", "didactic-r1", "--set", "betta=1"])
    assert res.exit_code == 2 and "unknown parameter" in res.stderr and "beta" in res.stderr
    res = CliRunner().invoke(cli, ["run", "--method", "dpo", "--benchmark", "didactic-r1", "--set", "beta=high"])
    assert res.exit_code == 2 and "expects float" in res.stderr


def test_method_needing_data_the_benchmark_lacks():
    from harness.core.context import EvalResult
    from harness.core.errors import HarnessError
    from harness.core.registry import BenchmarkSpec

    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})
    host.registry.register_callback("benchmark", "test")(
        BenchmarkSpec(name="eval-only", description="d", paper="p", evaluate=lambda c: EvalResult({})))
    with pytest.raises(HarnessError, match="method 'dpo' needs preferences, which benchmark 'eval-only' does not"):
        resolve(CellConfig(model="tiny:nano", method="dpo", benchmark="eval-only"), host)


def test_resume_after_an_interrupted_run(tmp_path):
    """A cell stopped after round 1 of 2 resumes from its checkpoint and ends like an uninterrupted one."""
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,didactic,engines"})
    cfg = CellConfig(model="tiny:nano", method="dpo", benchmark="didactic-r1", train={"rounds": 2, "steps": 5})
    cell = resolve(cfg, host)
    straight = run_cell(cell, host, out_dir=tmp_path / "a", progress=False, log=lambda m: None)

    import harness.training.trainer as train_mod

    original = train_mod.Trainer.train_round
    calls = []

    def stop_after_first(self, rnd):
        if rnd == 1:
            raise KeyboardInterrupt
        calls.append(rnd)
        return original(self, rnd)

    train_mod.Trainer.train_round = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            run_cell(cell, host, out_dir=tmp_path / "b", progress=False, log=lambda m: None)
    finally:
        train_mod.Trainer.train_round = original
    resumed = run_cell(cell, host, out_dir=tmp_path / "b", progress=False, log=lambda m: None)
    assert calls == [0]
    assert [r["round"] for r in resumed["rounds"]] == [0, 1, 2]
    for k, v in straight["final"].items():
        assert resumed["final"][k] == pytest.approx(v, abs=1e-6), k


@pytest.mark.parametrize("killed_round", [1, 2])
def test_resume_after_a_kill_between_checkpoint_and_eval(tmp_path, monkeypatch, killed_round):
    """The process dies after round k's checkpoint but before round k's evaluation is written: the rerun
    evaluates the checkpoint first, so every round's evaluation is there and the final metrics are the
    last round's, equal to an uninterrupted run's."""
    import harness.cell.run as run_mod

    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,didactic,engines"})
    cfg = CellConfig(model="tiny:nano", method="dpo", benchmark="didactic-r1",
                     benchmark_params={"n_states": 4, "warm_steps": 5}, train={"rounds": 2, "steps": 3, "batch_size": 4})
    cell = resolve(cfg, host)
    quiet = {"progress": False, "log": lambda m: None}
    straight = run_cell(cell, host, out_dir=tmp_path / "a", **quiet)
    assert [r["round"] for r in straight["rounds"]] == [0, 1, 2]

    original = run_mod.evaluate
    evals = []

    def die_at_eval(*args, **kwargs):
        evals.append(1)
        if len(evals) == killed_round + 1:  # eval 0, eval 1, ...: after round k's checkpoint
            raise SystemExit("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(run_mod, "evaluate", die_at_eval)
    with pytest.raises(SystemExit):
        run_cell(cell, host, out_dir=tmp_path / "b", **quiet)
    monkeypatch.setattr(run_mod, "evaluate", original)
    saved = json.loads((tmp_path / "b" / "rounds.json").read_text())
    assert [r["round"] for r in saved] == list(range(killed_round))  # round k's eval is missing
    lines: list[str] = []
    resumed = run_cell(cell, host, out_dir=tmp_path / "b", progress=False, log=lines.append)
    assert f"round {killed_round} was checkpointed but not evaluated: evaluating the checkpoint" in lines
    assert [r["round"] for r in resumed["rounds"]] == [0, 1, 2]
    assert resumed["rounds"] == straight["rounds"]
    assert resumed["final"] == straight["final"]
    assert resumed["records"] == straight["records"]
    assert [s["loss"] for s in resumed["steps"]] == [s["loss"] for s in straight["steps"]]
    # a finished cell run again reads everything back, records included, and trains nothing
    again = run_cell(cell, host, out_dir=tmp_path / "b", **quiet)
    assert again["rounds"] == straight["rounds"] and again["records"] == straight["records"]
    assert again["timings"]["train_s"] == 0.0


def test_lora_reference_is_the_base_model_with_adapters_off():
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})
    loaded = load_model("tiny:nano", seed=0)
    base = LM(loaded.model, loaded.tokenizer)
    from harness.cell.run import _apply_lora

    cfg = TrainConfig(steps=5, batch_size=4, lr=1e-2, lora=True)
    data = toy_training_data(base.encoder)
    seqs = data.demonstrations()
    before = base.logprobs(seqs)
    policy = LM(_apply_lora(loaded.model, cfg), loaded.tokenizer)
    spec = host.registry.method("dpo")
    trainer = Trainer(method=spec, method_params=spec.params(), cfg=cfg, policy=policy, data=data, seed=0,
                      engine_factory=lambda m: HFEngine(m, loaded.tokenizer), progress=False)
    assert trainer.reference.use_adapters and trainer.reference.model is policy.model  # no copy of the weights
    trainer.train_round(0)
    assert not torch.allclose(policy.logprobs(seqs), before, atol=1e-4)  # the adapters learned
    assert torch.allclose(trainer.reference.lm.logprobs(seqs), before, atol=1e-5)  # adapters off = the base
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)


def test_eval_initial_false_skips_round_zero_and_resumes(tmp_path, monkeypatch):
    """train.eval_initial=false: no evaluation before training (one evaluation saved per cell), the same
    final metrics; a run killed after round 1's checkpoint resumes without ever evaluating round 0; a cell
    with rounds = 0 (the baseline row) still evaluates."""
    import harness.cell.run as run_mod

    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,didactic,engines"})
    params = {"n_states": 4, "warm_steps": 5}
    train = {"rounds": 2, "steps": 3, "batch_size": 4, "eval_every_round": False}
    quiet = {"progress": False, "log": lambda m: None}
    full = run_cell(resolve(CellConfig(model="tiny:nano", method="dpo", benchmark="didactic-r1",
                                       benchmark_params=params, train=train), host), host, out_dir=tmp_path / "a", **quiet)
    cell = resolve(CellConfig(model="tiny:nano", method="dpo", benchmark="didactic-r1", benchmark_params=params,
                              train={**train, "eval_initial": False}), host)
    original, evals = run_mod.evaluate, []

    def counted(*args, **kwargs):
        evals.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(run_mod, "evaluate", counted)
    skipped = run_cell(cell, host, out_dir=tmp_path / "b", **quiet)
    assert [r["round"] for r in full["rounds"]] == [0, 2]
    assert [r["round"] for r in skipped["rounds"]] == [2] and len(evals) == 1
    assert skipped["final"] == full["final"] and skipped["records"] == full["records"]

    import harness.training.trainer as train_mod

    train_round = train_mod.Trainer.train_round

    def stop_at_second(self, rnd):
        if rnd == 1:
            raise KeyboardInterrupt
        return train_round(self, rnd)

    monkeypatch.setattr(train_mod.Trainer, "train_round", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        run_cell(cell, host, out_dir=tmp_path / "c", **quiet)
    monkeypatch.setattr(train_mod.Trainer, "train_round", train_round)
    evals.clear()
    resumed = run_cell(cell, host, out_dir=tmp_path / "c", **quiet)
    assert len(evals) == 1 and [r["round"] for r in resumed["rounds"]] == [2]
    assert resumed["final"] == full["final"]

    baseline = resolve(CellConfig(model="tiny:nano", method="sft", benchmark="didactic-r1", benchmark_params=params,
                                  train={"rounds": 0, "eval_initial": False}), host)
    assert [r["round"] for r in run_cell(baseline, host, **quiet)["rounds"]] == [0]
