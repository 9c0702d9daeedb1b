"""GSIL: hand values of the five losses and the pairwise option, what it reduces to, and seeded tiny runs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from alignment_harness_plugins.methods.dpo import dpo_loss
from alignment_harness_plugins.methods.gsil import LOSSES, GSILParams, gsil_loss
from harness.core.context import DataContext, TrainingData, WarmStartContext
from harness.core.data import Sequence
from harness.core.plugins import load
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.training.trainer import TrainConfig, Trainer

PLUGINS = "sft,dpo,gsil,spin,ava,adversarial,irl_rm,rloo,reinforce,ppo,best_of_n,didactic,engines"


@pytest.fixture(scope="module")
def host():
    return load(env={"HARNESS_LOAD_PLUGINS": PLUGINS})


def make_trainer(host, method: str, cfg: TrainConfig, *, benchmark: str = "didactic-r1", seed: int = 0,
                 warm: bool = False, **params) -> Trainer:
    """A Trainer on a didactic benchmark's data with tiny:nano (warm-started to pi_ref with ``warm``)."""
    bench = host.registry.benchmark(benchmark)
    bparams = bench.params() if warm else bench.params(warm_steps=0)
    loaded = load_model("tiny:nano", seed=seed)
    policy = LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))
    if warm:
        bench.warm_start(WarmStartContext(lm=policy, params=bparams, seed=seed))
    data_ctx = DataContext(params=bparams, encoder=policy.encoder, seed=seed)
    data = TrainingData(loader=lambda kind: bench.data(kind, data_ctx), reward_fn=bench.reward,
                        provides=bench.provides)
    spec = host.registry.method(method)
    mparams = spec.params(**params)
    modules = spec.modules(policy.model, mparams) if spec.modules else None
    return Trainer(method=spec, method_params=mparams, cfg=cfg, policy=policy, data=data, seed=seed,
                   engine_factory=lambda m: HFEngine(m, loaded.tokenizer), progress=False, modules=modules)


def record_rows(trainer: Trainer) -> list:
    """Wrap the trainer's sampler so that each round's rows are kept."""
    seen: list = []
    inner = trainer.method.sampler

    def sampler(ctx):
        rows = inner(ctx)
        seen.append(rows)
        return rows

    trainer.method = dataclasses.replace(trainer.method, sampler=sampler)
    return seen


# -- losses ------------------------------------------------------------------------------------------------

H_REAL, H_GEN, BETA, SHIFT = 1.0, -0.5, 2.0, 0.5
Z_R, Z_G = BETA * H_REAL + SHIFT, BETA * H_GEN + SHIFT  # 2.5, -0.5


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


HAND = {
    "logistic": (math.log1p(math.exp(-Z_R)), math.log1p(math.exp(Z_G))),
    "hinge": (max(0.0, 1 - Z_R), max(0.0, 1 + Z_G)),
    "brier": ((sig(Z_R) - 1) ** 2, sig(Z_G) ** 2),
    "kliep": (-Z_R, math.exp(Z_G)),
    "lsif": (-math.exp(Z_R), 0.5 * math.exp(Z_G) ** 2),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_matches_hand_values(name):
    # h enters as policy minus reference log-probs: pi - ref = h.
    loss, m = gsil_loss(torch.tensor([H_REAL - 3.0]), torch.tensor([H_GEN - 2.0]), torch.tensor([-3.0]),
                        torch.tensor([-2.0]), loss=name, beta=BETA, shift=SHIFT)
    real, gen = HAND[name]
    assert loss.item() == pytest.approx(real + gen, rel=1e-6, abs=1e-6)
    assert m["loss_real"].item() == pytest.approx(real, rel=1e-6, abs=1e-6)
    assert m["loss_generated"].item() == pytest.approx(gen, rel=1e-6, abs=1e-6)
    assert m["margin"].item() == pytest.approx(H_REAL - H_GEN) and m["accuracy"].item() == 1.0


def test_hinge_and_logistic_hand_numbers():
    assert HAND["hinge"] == (0.0, 0.5)
    zero = torch.zeros(1)
    loss, _ = gsil_loss(zero, zero, zero, zero, loss="logistic", beta=0.1)
    assert loss.item() == pytest.approx(2 * math.log(2))  # at the reference point z = 0 on both terms


def test_released_script_setting_is_scale_001_shift_2():
    # The code's z = alpha*h + beta with alpha=0.01 (scale) and beta=2 (shift): our beta=0.01, shift=2.
    h_r, h_g = torch.tensor([3.0]), torch.tensor([-4.0])
    loss, _ = gsil_loss(h_r, h_g, torch.zeros(1), torch.zeros(1), loss="logistic", beta=0.01, shift=2.0)
    expected = -math.log(sig(0.01 * 3 + 2)) - math.log(sig(-(0.01 * -4 + 2)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert GSILParams().beta == 0.1 and GSILParams().shift == 0.0  # our default: the paper's form, b = 0


def test_spin_option_is_exactly_dpo_on_the_same_pairs():
    g = torch.Generator().manual_seed(0)
    pi_r, pi_g, ref_r, ref_g = (torch.randn(6, generator=g) * 5 for _ in range(4))
    loss, m = gsil_loss(pi_r, pi_g, ref_r, ref_g, loss="spin", beta=0.3, shift=7.0)  # the shift is unused
    expected, _ = dpo_loss(pi_r, pi_g, ref_r, ref_g, beta=0.3)
    assert torch.equal(loss, expected)
    accuracy = ((pi_r - ref_r) > (pi_g - ref_g)).float().mean().item()
    assert m["reward_accuracy"].item() == pytest.approx(accuracy)


def test_logistic_takes_spins_first_step_at_the_reference_point():
    # At a round's start pi = pi_t, so h = 0: with b = 0 the unpaired logistic loss has exactly SPIN/DPO's
    # gradient (-beta/2 on the demonstration, +beta/2 on the generated sample); later they differ.
    grads = {}
    for name in ("logistic", "spin"):
        pi = torch.tensor([-2.0, -5.0], requires_grad=True)
        loss, _ = gsil_loss(pi[:1], pi[1:], torch.tensor([-2.0]), torch.tensor([-5.0]), loss=name, beta=0.4)
        loss.sum().backward()
        grads[name] = pi.grad.tolist()
    assert grads["logistic"] == pytest.approx([-0.2, 0.2]) and grads["spin"] == pytest.approx([-0.2, 0.2])
    pi = torch.tensor([-1.0, -5.0], requires_grad=True)  # away from h = 0 they are no longer equal
    for name in ("logistic", "spin"):
        pi.grad = None
        loss, _ = gsil_loss(pi[:1], pi[1:], torch.tensor([-2.0]), torch.tensor([-5.0]), loss=name, beta=0.4)
        loss.sum().backward()
        grads[name] = pi.grad.tolist()
    assert grads["logistic"] != pytest.approx(grads["spin"])


@pytest.mark.parametrize("name", ["logistic", "hinge", "brier", "spin"])
def test_bounded_losses_stay_finite_at_huge_log_ratios(name):
    pi = torch.tensor([1e9, -1e9], requires_grad=True)
    loss, _ = gsil_loss(pi, -pi, torch.zeros(2), torch.zeros(2), loss=name, beta=0.1, shift=2.0)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(pi.grad).all()


def test_unknown_loss_is_an_error():
    with pytest.raises(ValueError, match="unknown GSIL loss"):
        gsil_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), loss="EPO")


# -- seeded tiny runs --------------------------------------------------------------------------------------


def log_ratios(trainer: Trainer, seqs: list[Sequence]) -> torch.Tensor:
    return trainer.policy.logprobs(seqs) - trainer.reference.lm.logprobs(seqs)


def test_gsil_raises_the_demonstrations_log_ratio_above_the_generated_samples(host):
    t = make_trainer(host, "gsil", TrainConfig(rounds=1, steps=15, batch_size=16, lr=3e-3))
    seen = record_rows(t)
    t.train_round(0)
    rows = seen[0]
    assert len(rows) == 100 and set(rows[0].seqs) == {"real", "generated"}
    assert all(len(r.seqs["generated"].response) == 1 for r in rows)  # as long as the demonstrations
    h_real = log_ratios(t, [r.seqs["real"] for r in rows])
    h_gen = log_ratios(t, [r.seqs["generated"] for r in rows])
    assert h_real.mean() > 0 > h_gen.mean()
    assert (h_real > h_gen).float().mean() > 0.9


def test_each_round_regenerates_from_the_reset_reference(host):
    t = make_trainer(host, "gsil", TrainConfig(rounds=2, steps=8, batch_size=16, lr=3e-3), loss="hinge")
    seen = record_rows(t)
    t.train_round(0)
    prompts = [r.seqs["real"].prompt for r in seen[0]]
    outs = t.policy.generate(prompts, n=1, temperature=0.0, max_new_tokens=1)
    greedy_after_round0 = [c[0].ids for c in outs]
    t.train_round(1)
    assert [r.seqs["generated"].response for r in seen[1]] == greedy_after_round0
    for p, q in zip(t.reference.model.parameters(), t.model.parameters(), strict=True):
        assert not torch.equal(p, q)  # the reference is round 1's start, the policy moved on
