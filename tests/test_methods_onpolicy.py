"""REINFORCE, RLOO, RWR, best-of-n and PPO: hand-computed losses, samplers, invariants, didactic runs."""

from __future__ import annotations

import math
import random

import pytest
import torch

from alignment_harness_plugins.methods import best_of_n, ppo, reinforce, rloo, rwr
from harness.cell.run import CellConfig, resolve, run_cell
from harness.core.context import RoundContext
from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.models.logprobs import LogProbBatch, TokenLogProbs
from harness.training.trainer import TrainConfig, Trainer
from tests.conftest import run_harness, toy_training_data

PLUGINS = "reinforce,rloo,rwr,best_of_n,ppo,didactic,engines"


@pytest.fixture(scope="module")
def host():
    return load(env={"HARNESS_LOAD_PLUGINS": PLUGINS})


class SumReward:
    """A deterministic, picklable reward that varies between samples."""

    def __call__(self, prompt, completion) -> float:
        return float(sum(completion.ids) % 7)


class DenseReward:
    """One reward per response token: 1 for an even id, else 0."""

    def __call__(self, prompt, completion) -> list[float]:
        return [float(i % 2 == 0) for i in completion.ids]


def _ctx(lm, params, state=None, rnd=0, reference=None) -> RoundContext:
    return RoundContext(round=rnd, rounds=3, seed=0, params=params, data=toy_training_data(lm.encoder), policy=lm,
                        reference=reference, rng=random.Random(rnd),
                        state={"reward": SumReward()} if state is None else state)


# -- the shared parameter block ------------------------------------------------------------------------------


def test_on_policy_params_share_one_block_and_its_ranges():
    from harness.core.params import apply_overrides
    from harness.core.plugins import get_host
    from harness.pg import OnPolicyParams, RolloutParams
    from harness.rewards import RewardParams

    specs = get_host().registry.specs["method"]
    on_policy = {n for n, s in specs.items() if s.family == "on-policy"}
    assert len(on_policy) >= 13 and all(issubclass(specs[n].params, OnPolicyParams) for n in on_policy)
    for name in ("adversarial", "irl-rm"):  # their reward is their own (a discriminator, a fitted RM)
        params = specs[name].params
        assert issubclass(params, RolloutParams) and not issubclass(params, RewardParams), name
        assert params().n == 10 and params().sampling() == {"n": 10, "limit": None, "temperature": 1.0,
                                                            "max_new_tokens": None}
        with pytest.raises(HarnessError, match="parameter 'limit' must be >= 1, got 0"):
            apply_overrides(params, {"limit": "0"}, where=name, from_string=True)


def test_on_policy_spec_fills_the_shared_fields_and_passes_the_rest():
    from harness.pg import ON_POLICY_TRAIN_DEFAULTS, on_policy_spec
    from harness.rewards import prepare_reward

    spec = on_policy_spec("x", "a method", paper="p", sampler=rloo.sampler, objective=rloo.objective,
                          params=rloo.RLOOParams, reference="none", train={"batch_size": 10, "rounds": 2},
                          needs_hidden=True, real_train_defaults={"lr": 1e-6})
    assert spec.family == "on-policy" and spec.needs == {"prompts", "reward"} and spec.reference == "none"
    assert spec.hooks.on_round_start is prepare_reward and spec.needs_hidden and spec.real_train_defaults == {"lr": 1e-6}
    assert spec.train_defaults == {**ON_POLICY_TRAIN_DEFAULTS, "batch_size": 10, "rounds": 2}
    assert ON_POLICY_TRAIN_DEFAULTS["optimizer"] == "adam" and ON_POLICY_TRAIN_DEFAULTS["batch_size"] == 100


# -- losses on hand values -----------------------------------------------------------------------------------


def test_reinforce_objective_hand_values_and_entropy_bonus():
    logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0]])
    adv = torch.tensor([[0.5, -1.0]])
    loss, _ = reinforce.reinforce_objective(logps, mask, adv)
    assert loss.item() == pytest.approx(-(0.5 * -1.0 + -1.0 * -2.0))
    uniform = torch.zeros(1, 2, 4)  # entropy log 4 at each token
    loss_h, m = reinforce.reinforce_objective(logps, mask, adv, uniform, entropy_coef=0.1)
    assert loss_h.item() == pytest.approx(loss.item() - 0.1 * math.log(4))
    assert m["entropy"].item() == pytest.approx(math.log(4))


def test_rloo_loss_and_rwr_weights_hand_values():
    loss, _ = rloo.rloo_loss(torch.tensor([-2.0, -1.0]), torch.tensor([0.5, -0.5]))
    assert loss.tolist() == [1.0, -0.5]
    w = rwr.rwr_weights([0.0, 1.0], tau=1.0)
    mean = (math.exp(-1) + 1) / 2
    assert w == pytest.approx([math.exp(-1) / mean, 1 / mean])
    assert sum(w) / 2 == pytest.approx(1.0)
    assert rwr.rwr_weights([1e6, 0.0], tau=0.1) == pytest.approx([2.0, 0.0])  # no overflow
    loss, _ = rwr.rwr_loss(torch.tensor([-2.0, -1.0]), torch.tensor([w[0], w[1]]))
    assert loss.tolist() == pytest.approx([2 * w[0], w[1]])


def test_best_of_n_loss_with_and_without_the_negative_term():
    best, worst = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -4.0])
    assert best_of_n.best_of_n_loss(best)[0].tolist() == [1.0, 2.0]
    assert best_of_n.best_of_n_loss(best, worst, beta=0.5)[0].tolist() == [1.0 - 1.5, 2.0 - 2.0]


def test_ppo_loss_hand_values():
    logp = torch.log(torch.tensor([[0.6, 0.5]])).requires_grad_(True)
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    mask = torch.tensor([[1.0, 1.0]])
    adv = torch.tensor([[1.0, -1.0]])
    values = torch.tensor([[0.5, 0.0]], requires_grad=True)
    old_v, ret = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    loss, m = ppo.ppo_loss(logp, mask, old, adv, values, old_v, ret, clip=0.1, vf_coef=0.1, value_clip=0.2)
    # token 0: ratio 1.2 clipped to 1.1 -> -1.1; token 1: ratio 1 -> +1. pg = mean = -0.05
    # value: token 0 max((0.5-1)^2, (0.2-1)^2)/2 = 0.32; token 1 (0-1)^2/2 = 0.5; vf = 0.41
    assert m["pg_loss"].item() == pytest.approx(-0.05)
    assert m["vf_loss"].item() == pytest.approx(0.41)
    assert m["clipfrac"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(-0.05 + 0.041)
    loss.sum().backward()
    assert logp.grad[0, 0].item() == 0.0  # outside the trust region: no gradient
    assert values.grad[0, 0].item() == 0.0  # clipped value branch


def test_objectives_unpack_per_token_row_values():
    from harness.training.pg import token_values

    logp = torch.log(torch.tensor([[0.6, 0.5]]))
    mask = torch.tensor([[1.0, 1.0]])
    row = {"reward": 1.0, "kl_coef": 0.2, **token_values("old_logp", [math.log(0.5), math.log(0.5)], 2),
           **token_values("adv", [1.0, -1.0], 2), **token_values("old_value", [0.0, 0.0], 2),
           **token_values("ret", [1.0, 1.0], 2)}
    batch = LogProbBatch(logps={"sample": logp.sum(-1)},
                         tokens={"sample": TokenLogProbs(logp, mask, hidden=torch.zeros(1, 2, 4))},
                         values={k: torch.tensor([v]) for k, v in row.items()}, modules=ppo.ValueHead(4))
    loss, m = ppo.objective(batch, ppo.PPOParams(clip=0.1))
    # as in test_ppo_loss_hand_values, with V = 0 from the zero-initialised head: vf = mean(0.5, 0.5)
    assert loss.item() == pytest.approx(-0.05 + 0.1 * 0.5, abs=1e-6)
    assert m["kl_coef"].item() == pytest.approx(0.2)
    loss, _ = reinforce.objective(batch, reinforce.ReinforceParams())
    assert loss.item() == pytest.approx(-(1.0 * math.log(0.6) - 1.0 * math.log(0.5)))


# -- samplers ------------------------------------------------------------------------------------------------


def test_reinforce_running_baseline_persists_across_rounds(tiny_lm):
    state = {"reward": SumReward()}
    params = reinforce.ReinforceParams(n=2, max_new_tokens=2)
    first = reinforce.sampler(_ctx(tiny_lm, params, state, rnd=0))
    second = reinforce.sampler(_ctx(tiny_lm, params, state, rnd=1))
    moments = state["reinforce/moments"]
    rewards = torch.tensor([r.values["reward"] for r in first + second])
    assert moments.count == 32 and moments.mean == pytest.approx(rewards.mean().item())
    r = second[0].values
    expected = (r["reward"] - moments.mean) / moments.std
    assert r["adv@0"] == pytest.approx(expected, rel=1e-4) and r["adv@1"] == pytest.approx(expected, rel=1e-4)


def test_reinforce_dense_rewards_use_reward_to_go(tiny_lm):
    state = {"reward": DenseReward()}
    rows = reinforce.sampler(_ctx(tiny_lm, reinforce.ReinforceParams(n=1, max_new_tokens=3, normalize=False), state))
    mean = state["reinforce/moments"].mean
    for row in rows:
        ids = row.seqs["sample"].response
        r = [float(i % 2 == 0) for i in ids]
        togo = [sum(r[t:]) for t in range(len(r))]
        assert row.values["reward"] == sum(r)
        assert [row.values[f"adv@{t}"] for t in range(len(r))] == pytest.approx([g - mean for g in togo], abs=1e-6)


def test_rloo_advantages_are_leave_one_out_within_each_prompt(tiny_lm):
    rows = rloo.sampler(_ctx(tiny_lm, rloo.RLOOParams(n=3, max_new_tokens=2)))
    assert len(rows) == 24
    for g in range(8):
        group = rows[3 * g : 3 * g + 3]
        r = [x.values["reward"] for x in group]
        for i, x in enumerate(group):
            others = [r[j] for j in range(3) if j != i]
            assert x.values["advantage"] == pytest.approx(r[i] - sum(others) / 2)
    with pytest.raises(ValueError):
        rloo.sampler(_ctx(tiny_lm, rloo.RLOOParams(n=1)))


def test_rwr_and_best_of_n_samplers(tiny_lm):
    rows = rwr.sampler(_ctx(tiny_lm, rwr.RWRParams(n=2, max_new_tokens=2, tau=1.0)))
    weights = [r.values["weight"] for r in rows]
    assert sum(weights) / len(weights) == pytest.approx(1.0)
    top = max(rows, key=lambda r: r.values["reward"])
    assert top.values["weight"] == max(weights)
    rows = best_of_n.sampler(_ctx(tiny_lm, best_of_n.BestOfNParams(n=4, max_new_tokens=2, beta=0.1)))
    assert len(rows) == 8 and set(rows[0].seqs) == {"best", "worst"}
    assert all(r.values["reward"] >= r.values["reward_worst"] for r in rows)
    state = {"reward": DenseReward()}  # dense rewards are summed to rank
    rows = best_of_n.sampler(_ctx(tiny_lm, best_of_n.BestOfNParams(n=4, max_new_tokens=2), state))
    assert all(r.values["reward"] == sum(float(i % 2 == 0) for i in r.seqs["best"].response) for r in rows)


def test_ppo_sampler_first_round_values(tiny_lm):
    params = ppo.PPOParams(n=2, max_new_tokens=2, whiten_advantages=False, lam=1.0)
    head = ppo.make_value_head(tiny_lm.model, params)
    state = {"reward": DenseReward()}
    rows = ppo.sampler(_ctx(tiny_lm, params, state, reference=tiny_lm))
    ctl = state["ppo/kl_ctl"]
    assert ctl.value == pytest.approx(0.2 * (1 - 0.2 * 16 / 10_000))  # KL 0 < target: coefficient goes down
    for row in rows:
        v = row.values
        r = [float(i % 2 == 0) for i in row.seqs["sample"].response]
        # policy == reference -> no KL penalty; V_old = 0 (zero-initialised head); lam = 1 -> reward-to-go
        assert [v["ret@0"], v["ret@1"]] == pytest.approx([r[0] + r[1], r[1]], abs=1e-5)
        assert [v["adv@0"], v["adv@1"]] == pytest.approx([r[0] + r[1], r[1]], abs=1e-5)
        assert v["old_value@0"] == 0.0 and v["old_logp@0"] < 0 and v["kl_coef"] == 0.2
    assert head is ppo.value_head_of(tiny_lm.model)
    with pytest.raises(HarnessError, match="value head"):
        ppo.value_head_of(torch.nn.Linear(1, 1))


# -- the trainer: accumulation invariance, didactic runs ----------------------------------------------------


def _trainer(host, method, cfg, **params) -> Trainer:
    loaded = load_model("tiny:nano", seed=0)
    policy = LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))
    spec = host.registry.method(method)
    p = spec.params(max_new_tokens=2, **params)
    t = Trainer(method=spec, method_params=p, cfg=cfg, policy=policy, data=toy_training_data(policy.encoder), seed=0,
                engine_factory=lambda m: HFEngine(m, loaded.tokenizer), progress=False,
                modules=spec.modules(policy.model, p) if spec.modules else None)
    t.state["reward"] = SumReward()
    return t


@pytest.mark.parametrize("method", ["reinforce", "ppo"])
def test_batch8_equals_batch1_times_accumulation8(host, method):
    # SGD: Adam would amplify float-summation noise in near-zero gradients to full-size steps
    kw = {"steps": 2, "lr": 1e-2, "warmup_ratio": 0.0, "schedule": "constant", "optimizer": "sgd"}
    big = _trainer(host, method, TrainConfig(batch_size=8, grad_accum=1, **kw), n=1)
    small = _trainer(host, method, TrainConfig(batch_size=1, grad_accum=8, **kw), n=1)
    la = [r.metrics["loss"] for r in big.train_round(0)]
    lb = [r.metrics["loss"] for r in small.train_round(0)]
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-5)
    for p, q in zip(big.model.parameters(), small.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)


def _run(host, method, bench="didactic-r1", params=None, **train):
    cell = resolve(CellConfig(model="tiny:nano", method=method, benchmark=bench, method_params=params or {},
                              train={k: str(v) for k, v in train.items()}), host)
    return run_cell(cell, host, out_dir=None, progress=False, log=lambda m: None)


def test_reinforce_raises_expected_reward_under_r1(host):
    rec = _run(host, "reinforce", rounds=3)
    before = rec["rounds"][0]["metrics"]["didactic-r1/expected_reward"]
    after = rec["final"]["didactic-r1/expected_reward"]
    assert before == pytest.approx(0.039, abs=0.005)
    assert after > 0.3 > before
    assert rec["final"]["didactic-r1/kl_ref"] > 0.5


@pytest.mark.parametrize("method", ["rloo", "rwr", "best-of-n", "ppo"])
def test_on_policy_methods_improve_under_r2(host, method):
    rec = _run(host, method, "didactic-r2", rounds=2, steps=5)
    before = rec["rounds"][0]["metrics"]["didactic-r2/expected_reward"]
    assert rec["final"]["didactic-r2/expected_reward"] > before + 0.05


def test_reinforce_through_the_cli_with_a_bt_reward(tmp_path):
    """The CLI path end to end, with the reward from a Bradley-Terry RM fitted on the bandit's pairs."""
    out = tmp_path / "run"
    res = run_harness("run", "--method", "reinforce", "--benchmark", "didactic-r2", "--quiet", "--out", str(out),
                      "--set", "train.rounds=1", "--set", "train.steps=2", "--set", "reward_source=bt",
                      "--set", "rm_steps=5", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "record.json").exists() and "expected_reward" in res.stdout
