"""The trainer loop: determinism, accumulation invariance, reference caching, checkpoints and resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.core.contract import PluginError
from harness.core.plugins import load
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.training.trainer import TrainConfig, Trainer, lr_lambda
from tests.conftest import toy_training_data


@pytest.fixture(scope="module")
def host():
    return load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})


def make_trainer(host, method: str, cfg: TrainConfig, seed: int = 0, checkpoint_dir=None, **params) -> Trainer:
    loaded = load_model("tiny:nano", seed=seed)
    policy = LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))
    spec = host.registry.method(method)
    return Trainer(
        method=spec, method_params=spec.params(**params), cfg=cfg, policy=policy,
        data=toy_training_data(policy.encoder), seed=seed,
        engine_factory=lambda m: HFEngine(m, loaded.tokenizer), checkpoint_dir=checkpoint_dir, progress=False,
    )


def losses(trainer: Trainer, rounds: int) -> list[float]:
    out = []
    for r in range(trainer.start_round, rounds):
        out += [rec.metrics["loss"] for rec in trainer.train_round(r)]
    return out


def test_same_seed_same_loss_trajectory(host):
    cfg = TrainConfig(rounds=2, steps=4, batch_size=4, lr=1e-3)
    a = losses(make_trainer(host, "dpo", cfg), 2)
    b = losses(make_trainer(host, "dpo", cfg), 2)
    assert a == b  # bit-identical on CPU
    c = losses(make_trainer(host, "dpo", cfg, seed=1), 2)
    assert a != c


def test_batch8_equals_batch1_times_accumulation8(host):
    big = make_trainer(host, "sft", TrainConfig(steps=3, batch_size=8, grad_accum=1, lr=1e-3, warmup_ratio=0))
    small = make_trainer(host, "sft", TrainConfig(steps=3, batch_size=1, grad_accum=8, lr=1e-3, warmup_ratio=0))
    la, lb = losses(big, 1), losses(small, 1)
    assert la == pytest.approx(lb, rel=1e-5, abs=1e-5)
    for p, q in zip(big.model.parameters(), small.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)


def test_training_lowers_the_loss(host):
    t = make_trainer(host, "sft", TrainConfig(steps=30, batch_size=8, lr=3e-3))
    ls = losses(t, 1)
    assert ls[-1] < 0.6 * ls[0]


def test_reference_logprobs_are_computed_once_per_round(host):
    cfg = TrainConfig(rounds=2, steps=5, batch_size=4)
    t = make_trainer(host, "dpo", cfg)
    calls = []
    t.reference.model.get_decoder().register_forward_hook(lambda *a: calls.append(1))  # the transformer body
    losses(t, 2)
    # 8 pairs, 2 roles, ref batch 16: one forward per role per round; never one per step.
    assert len(calls) == 2 * 2


def test_phases_are_reported_before_the_slow_parts_of_a_round(host):
    t = make_trainer(host, "dpo", TrainConfig(rounds=2, steps=1, batch_size=4))
    seen: list[tuple[str, int, int]] = []
    t.on_phase = lambda what, rnd: seen.append((what, rnd, len(t.history)))
    losses(t, 2)
    assert seen == [("sampling", 0, 0), ("reference log-probs", 0, 0), ("sampling", 1, 1), ("reference log-probs", 1, 1)]


def test_checkpoint_resume_continues_identically(host, tmp_path):
    cfg = TrainConfig(rounds=3, steps=3, batch_size=4, lr=1e-3)
    straight = make_trainer(host, "dpo", cfg)
    full = losses(straight, 3)

    first = make_trainer(host, "dpo", cfg, checkpoint_dir=tmp_path)
    part = losses(first, 2)
    resumed = make_trainer(host, "dpo", cfg, checkpoint_dir=tmp_path)
    assert resumed.try_resume() and resumed.start_round == 2
    rest = losses(resumed, 3)
    assert part + rest == pytest.approx(full, abs=1e-6)
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_lr_schedule_warmup_then_linear_decay():
    cfg = TrainConfig(rounds=1, steps=10, warmup_ratio=0.2, schedule="linear")
    f = lr_lambda(cfg)
    assert [round(f(s), 3) for s in range(4)] == [0.333, 0.667, 1.0, 0.875]
    assert f(9) == pytest.approx(0.125)
    cfg = dataclasses.replace(cfg, schedule="constant")
    assert lr_lambda(cfg)(9) == 1.0


def test_nan_loss_is_an_error(host):
    t = make_trainer(host, "sft", TrainConfig(steps=1, batch_size=2))
    bad = dataclasses.replace(t.method, objective=lambda b, p: (b.logps["demo"] * float("nan"), {}))
    t.method = bad
    with pytest.raises(PluginError, match="method 'sft'.*the loss is nan at step 1 of round 1"):
        t.train_round(0)


def test_gradient_checkpointing_changes_memory_not_results(host):
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-3, warmup_ratio=0)
    plain = make_trainer(host, "dpo", cfg)
    ckpt = make_trainer(host, "dpo", dataclasses.replace(cfg, gradient_checkpointing=True))
    on = lambda m: m.is_activation_checkpointing if hasattr(m, "activation_checkpointing_enable") else m.is_gradient_checkpointing  # noqa: E731, E501
    assert on(ckpt.model) and not on(plain.model)
    assert not on(ckpt.reference.model)  # the frozen reference keeps no activations anyway
    assert losses(ckpt, 1) == pytest.approx(losses(plain, 1), abs=1e-6)
    for p, q in zip(plain.model.parameters(), ckpt.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
