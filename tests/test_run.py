"""`harness run` end to end: one cell trains, evaluates and writes its record."""

from __future__ import annotations

import json

import pytest
import torch

from harness.engines.hf import HFEngine
from harness.lm import LM
from harness.models import load_model
from harness.plugins import load
from harness.run import CellConfig, resolve, run_cell
from harness.train import TrainConfig, Trainer
from tests.conftest import run_harness, toy_training_data


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_run_raises_expected_reward_on_didactic_r1(method, tmp_path):
    out = tmp_path / method
    res = run_harness("run", "--model", "tiny:nano", "--method", method, "--benchmark", "didactic-r1",
                      "--seed", "0", "--set", "train.steps=50", "--quiet", "--out", str(out))
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
    res = run_harness("run", "--method", "dpo", "--benchmark", "didactic-r1", "--set", "betta=1")
    assert res.returncode == 2 and "unknown parameter" in res.stderr and "beta" in res.stderr
    res = run_harness("run", "--method", "dpo", "--benchmark", "didactic-r1", "--set", "beta=high")
    assert res.returncode == 2 and "expects float" in res.stderr


def test_method_needing_data_the_benchmark_lacks():
    from harness.context import EvalResult
    from harness.errors import HarnessError
    from harness.registry import BenchmarkSpec

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

    import harness.train as train_mod

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


def test_lora_reference_is_the_base_model_with_adapters_off():
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})
    loaded = load_model("tiny:nano", seed=0)
    base = LM(loaded.model, loaded.tokenizer)
    from harness.run import _apply_lora

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
