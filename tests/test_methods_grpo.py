"""GRPO, Dr. GRPO, DAPO, RAFT, ReMax and REINFORCE++: each loss recomputed from its paper's equation with
plain Python on hand-chosen numbers, the papers' special cases and gradient signs, the samplers on the tiny
model, and one seeded run per family."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from alignment_harness_plugins.methods import dapo, dr_grpo, grpo, raft, reinforce_pp, remax
from harness.cell.run import CellConfig, resolve, run_cell
from harness.core.context import RoundContext
from harness.core.plugins import load
from tests.conftest import toy_training_data


def k3(logp: float, ref: float) -> float:
    return math.exp(ref - logp) - (ref - logp) - 1.0


def paper_grpo_row(logp, old, ref, adv, n_tokens, norm, lo, hi, beta):
    """One row of eq. 3 written out token by token."""
    total = 0.0
    for t in range(n_tokens):
        rho = math.exp(logp[t] - old[t])
        total += -min(rho * adv, min(max(rho, 1 - lo), 1 + hi) * adv) + beta * k3(logp[t], ref[t])
    return total / norm


# -- GRPO -------------------------------------------------------------------------------------------------


def test_group_advantages_are_mean_centred_and_std_scaled_per_group():
    rewards = [[1.0, 0.0, 0.0, 1.0], [0.2, 0.4, 0.9, 0.5]]
    adv = grpo.group_advantages(torch.tensor(rewards))
    for g, rs in enumerate(rewards):
        mu, sd = statistics.mean(rs), statistics.stdev(rs)
        assert adv[g].tolist() == pytest.approx([(r - mu) / (sd + 1e-4) for r in rs], rel=1e-5)
    tied = grpo.group_advantages(torch.tensor([[1.0, 1.0, 1.0]]))
    assert tied.abs().max().item() == 0.0  # all tie: no signal, no NaN
    unscaled = grpo.group_advantages(torch.tensor(rewards), scale=False)  # Dr. GRPO
    assert unscaled[1].tolist() == pytest.approx([r - 0.5 for r in rewards[1]])


def test_grpo_loss_matches_eq3_token_by_token():
    logp = [[-1.0, -0.5, -2.0], [-0.3, -1.2, 0.0]]
    old = [[-1.3, -0.5, -1.0], [-0.1, -1.0, 0.0]]
    ref = [[-1.1, -0.9, -1.5], [-0.2, -1.4, 0.0]]
    adv, lengths = [0.7, -1.1], [3, 2]
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    norm = torch.tensor([3.0, 2.0])
    loss, m = grpo.grpo_loss(torch.tensor(logp), torch.tensor(old), torch.tensor(ref), torch.tensor(adv), mask, norm,
                             clip_low=0.2, clip_high=0.28, kl_coef=0.04)
    want = [paper_grpo_row(logp[i], old[i], ref[i], adv[i], lengths[i], lengths[i], 0.2, 0.28, 0.04) for i in range(2)]
    assert loss.tolist() == pytest.approx(want, rel=1e-6)
    assert m["kl_ref"].item() == pytest.approx(statistics.mean(
        [statistics.mean(k3(a, b) for a, b in zip(logp[i][:n], ref[i][:n], strict=True))
         for i, n in enumerate(lengths)]), rel=1e-6)


def test_on_policy_grpo_gradient_is_reinforce_with_the_group_baseline():
    # ratio 1 and no KL: d loss / d logp_t = -A / |o| for every token (the sign of the advantage decides)
    logp = torch.tensor([[-1.0, -2.0], [-1.0, -2.0]], requires_grad=True)
    loss, _ = grpo.grpo_loss(logp, logp.detach(), None, torch.tensor([0.5, -0.5]), torch.ones(2, 2),
                             torch.tensor([2.0, 2.0]), clip_low=0.2, clip_high=0.2, kl_coef=0.0)
    loss.sum().backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-0.25, -0.25, 0.25, 0.25])


def test_clip_stops_the_gradient_and_clip_higher_lets_it_through():
    def grad(hi: float) -> float:
        logp = torch.tensor([[math.log(1.25)]], requires_grad=True)  # rho = 1.25 > 1.2, A > 0
        loss, _ = grpo.grpo_loss(logp, torch.zeros(1, 1), None, torch.tensor([1.0]), torch.ones(1, 1),
                                 torch.tensor([1.0]), clip_low=0.2, clip_high=hi, kl_coef=0.0)
        loss.sum().backward()
        return logp.grad.item()

    assert grad(0.2) == 0.0  # GRPO: clipped
    assert grad(0.28) == pytest.approx(-1.25)  # DAPO's clip-higher: -A rho, still pushing up


def test_kl_term_pulls_toward_the_reference():
    logp = torch.tensor([[-0.5]], requires_grad=True)  # above the reference's -1.0
    loss, _ = grpo.grpo_loss(logp, logp.detach(), torch.tensor([[-1.0]]), torch.tensor([0.0]), torch.ones(1, 1),
                             torch.tensor([1.0]), clip_low=0.2, clip_high=0.2, kl_coef=0.04)
    loss.sum().backward()
    assert logp.grad.item() == pytest.approx(0.04 * (1 - math.exp(-0.5)))  # > 0: lowered toward pi_ref


# -- Dr. GRPO ---------------------------------------------------------------------------------------------


def test_dr_grpo_gives_every_token_the_same_weight_whatever_the_length():
    # two wrong answers (A = -1), 1 and 4 tokens: GRPO's 1/|o| weighs the short one's tokens 4x more;
    # Dr. GRPO's constant divisor weighs them alike (no incentive to ramble when wrong)
    def token_grads(norm):
        logp = torch.tensor([[-1.0, 0, 0, 0], [-1.0, -1, -1, -1]], requires_grad=True)
        mask = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1]])
        loss, _ = grpo.grpo_loss(logp, logp.detach(), None, torch.tensor([-1.0, -1.0]), mask, norm,
                                 clip_low=0.2, clip_high=0.2, kl_coef=0.0)
        loss.sum().backward()
        return logp.grad[0, 0].item(), logp.grad[1, 0].item()

    short, long_ = token_grads(torch.tensor([1.0, 4.0]))  # GRPO: divide by |o_i|
    assert short == pytest.approx(4 * long_)
    short, long_ = token_grads(torch.tensor([8.0, 8.0]))  # Dr. GRPO: divide by the budget L = 8
    assert short == pytest.approx(long_) == pytest.approx(1 / 8)
    p = dr_grpo.DrGRPOParams()
    assert not p.scale_rewards and p.kl_coef == 0.0


# -- DAPO -------------------------------------------------------------------------------------------------


def test_overlong_penalty_follows_eq13():
    assert dapo.overlong_penalty(10, 20, 4) == 0.0  # below L_max - L_cache
    assert dapo.overlong_penalty(16, 20, 4) == 0.0
    assert dapo.overlong_penalty(18, 20, 4) == pytest.approx((16 - 18) / 4)
    assert dapo.overlong_penalty(20, 20, 4) == pytest.approx(-1.0)
    assert dapo.overlong_penalty(25, 20, 4) == -1.0
    assert dapo.overlong_penalty(20, 20, 0) == 0.0  # off


def test_dapo_token_level_loss_weighs_all_tokens_of_the_round_alike():
    # rows divided by the round's mean length: the row mean equals sum over tokens / number of tokens
    per_token = [[0.3, -0.2, 0.0, 0.0], [0.5, 0.1, -0.4, 0.2]]
    lengths = [2, 4]
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    mean_len = sum(lengths) / 2
    logp = torch.zeros(2, 4)
    # with ratio 1 and A = -1 each token's loss is rho = 1; scale A per row to get the chosen sums
    loss, _ = grpo.grpo_loss(logp, logp, None, torch.tensor([-1.0, -1.0]), mask, torch.tensor([mean_len] * 2),
                             clip_low=0.2, clip_high=0.28, kl_coef=0.0)
    assert loss.mean().item() == pytest.approx(sum(lengths) / sum(lengths))  # every token's loss is 1
    tokens = sum(per_token[i][t] for i in range(2) for t in range(lengths[i]))
    rows = [sum(per_token[i][: lengths[i]]) / mean_len for i in range(2)]
    assert statistics.mean(rows) == pytest.approx(tokens / sum(lengths))


def test_dynamic_sampling_drops_tied_groups():
    assert dapo.informative([0.0, 1.0, 0.0]) and not dapo.informative([1.0, 1.0])
    p = dapo.DAPOParams()
    assert (p.clip, p.clip_high, p.kl_coef) == (0.2, 0.28, 0.0)


# -- samplers on the tiny model -----------------------------------------------------------------------------


class SumReward:
    """A deterministic reward that varies between samples (picklable)."""

    def __call__(self, prompt, completion) -> float:
        return float(sum(completion.ids) % 5)


def _ctx(tiny_lm, params, reward=None) -> RoundContext:
    return RoundContext(round=0, rounds=1, seed=0, params=params, data=toy_training_data(tiny_lm.encoder),
                        policy=tiny_lm, reference=tiny_lm, rng=random.Random(0),
                        state={"reward": reward or SumReward()})


def test_grpo_family_samplers_fix_advantages_old_logps_and_divisors(tiny_lm):
    rows = grpo.sampler(_ctx(tiny_lm, grpo.GRPOParams(n=4, max_new_tokens=3)))
    assert len(rows) == 8 * 4  # 8 toy prompts x G
    for g in range(8):
        adv = [r.values["advantage"] for r in rows[g * 4:(g + 1) * 4]]
        assert sum(adv) == pytest.approx(0.0, abs=1e-6)
    r0 = rows[0]
    assert r0.values["norm"] == len(r0.seqs["sample"].response)
    logps = tiny_lm.logprobs([r0.seqs["sample"]])  # pi_old = the sampling policy
    n = len(r0.seqs["sample"].response)
    assert sum(r0.values[f"old_logp@{t}"] for t in range(n)) == pytest.approx(logps.item(), abs=1e-4)
    rows = dr_grpo.sampler(_ctx(tiny_lm, dr_grpo.DrGRPOParams(n=4, max_new_tokens=3)))
    assert {r.values["norm"] for r in rows} == {3.0}
    rows = dapo.sampler(_ctx(tiny_lm, dapo.DAPOParams(n=4, max_new_tokens=3)))
    lengths = [len(r.seqs["sample"].response) for r in rows]
    assert [r.values["norm"] for r in rows] == pytest.approx([sum(lengths) / len(lengths)] * len(rows))
    groups = {r.seqs["sample"].prompt.ids for r in rows}
    for ids in groups:  # every kept group is informative
        assert len({r.values["reward"] for r in rows if r.seqs["sample"].prompt.ids == ids}) > 1


def test_dapo_round_with_only_tied_groups_trains_on_a_zero_weight_row(tiny_lm):
    rows = dapo.sampler(_ctx(tiny_lm, dapo.DAPOParams(n=2, max_new_tokens=2), reward=lambda p, c: 1.0))
    assert len(rows) == 1 and rows[0].values["weight"] == 0.0 and rows[0].values["informative_groups"] == 0.0


# -- RAFT -------------------------------------------------------------------------------------------------


def test_raft_selection_and_loss():
    assert raft.select([0.1, 0.9, 0.5, 0.9], keep=1, min_reward=None) == [1]
    assert raft.select([0.1, 0.9, 0.5, 0.7], keep=2, min_reward=None) == [1, 3]
    assert raft.select([0.0, 1.0, 0.0], keep=2, min_reward=0.5) == [1]  # rejection sampling: correct ones only
    assert raft.select([1.0, 1.0], keep=1, min_reward=None) == []  # all tie: nothing to rank
    assert raft.raft_loss(torch.tensor([-4.0, -3.0]), torch.tensor([2.0, 3.0])).tolist() == [2.0, 1.0]
    logps = torch.tensor([-4.0], requires_grad=True)
    raft.raft_loss(logps).sum().backward()
    assert logps.grad.item() == -1.0  # maximum likelihood: only raises the kept sample


def test_raft_sampler_keeps_top_k_per_prompt(tiny_lm):
    rows = raft.sampler(_ctx(tiny_lm, raft.RAFTParams(n=4, keep=2, max_new_tokens=3)))
    assert 0 < len(rows) <= 8 * 2 and all(r.values["weight"] == 1.0 for r in rows)


# -- ReMax ------------------------------------------------------------------------------------------------


def test_remax_loss_uses_the_greedy_reward_as_baseline(tiny_lm):
    logps = torch.tensor([-2.0, -1.0], requires_grad=True)
    loss = remax.remax_loss(logps, torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.25]))
    assert loss.tolist() == pytest.approx([-(1 - 0.25) * -2.0, -(0 - 0.25) * -1.0])
    loss.sum().backward()
    assert logps.grad.tolist() == pytest.approx([-0.75, 0.25])  # better than greedy: up; worse: down
    rows = remax.sampler(_ctx(tiny_lm, remax.ReMaxParams(n=2, max_new_tokens=3)))
    greedy = {r.seqs["sample"].prompt.ids: r.values["baseline"] for r in rows}
    assert len(rows) == 16 and len(greedy) == 8  # one greedy baseline per prompt, shared by its samples


# -- REINFORCE++ ------------------------------------------------------------------------------------------


def test_reinforce_pp_advantages_are_kl_penalised_returns_whitened_over_the_batch():
    task = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # row 1 has one token: its reward at t = 0
    kl = torch.tensor([[0.5, 0.2], [0.1, 0.0]])
    mask = torch.tensor([[1.0, 1], [1, 0]])
    adv = reinforce_pp.token_advantages(task, kl, mask, kl_coef=0.1)
    g = [(1 - 0.02) - 0.05, 1 - 0.02, 2 - 0.01]  # returns of r_t - beta KL_t, then whitened over 3 tokens
    mu = statistics.mean(g)
    sd = math.sqrt(sum((x - mu) ** 2 for x in g) / 3)
    assert [adv[0, 0].item(), adv[0, 1].item(), adv[1, 0].item()] == pytest.approx([(x - mu) / sd for x in g],
                                                                                      rel=1e-4)
    assert adv[1, 1].item() == 0.0
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    loss, _ = reinforce_pp.reinforce_pp_loss(logp, logp.detach(), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2),
                                             clip=0.2)
    loss.sum().backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-0.5, 0.5])


# -- one seeded run ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host():
    return load(env={"HARNESS_LOAD_PLUGINS": "grpo,dr_grpo,dapo,didactic,engines"})


def test_grpo_raises_expected_reward_on_the_bandit(host):
    cell = resolve(CellConfig(model="tiny:nano", method="grpo", benchmark="didactic-r1",
                              train={"rounds": "3", "steps": "10"}), host)
    rec = run_cell(cell, host, out_dir=None, progress=False, log=lambda m: None)
    before = rec["rounds"][0]["metrics"]["didactic-r1/expected_reward"]
    assert before == pytest.approx(0.039, abs=0.005)
    assert rec["final"]["didactic-r1/expected_reward"] > 2 * before
