"""IPO, Pref-FT and on-policy DPO/IPO: hand-computed losses, samplers, and a seeded didactic run."""

from __future__ import annotations

import random

import pytest
import torch

from alignment_harness_plugins.methods import ipo, online_dpo, pref_ft
from alignment_harness_plugins.methods.dpo import dpo_loss
from harness.cell.run import CellConfig, resolve, run_cell
from harness.core.context import RoundContext
from harness.core.plugins import load
from harness.models.logprobs import LogProbBatch, TokenLogProbs
from tests.conftest import toy_training_data

PLUGINS = "sft,dpo,ipo,online_dpo,pref_ft,didactic,engines"


@pytest.fixture(scope="module")
def host():
    return load(env={"HARNESS_LOAD_PLUGINS": PLUGINS})


# -- IPO --------------------------------------------------------------------------------------------------


def test_ipo_hand_values_and_target():
    # h_w = 0.5, h_l = -0.5: margin 1. tau 0.5 -> target 1 -> loss 0; tau 0.05 -> target 10 -> 81.
    args = (torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]))
    assert ipo.ipo_loss(*args, tau=0.5)[0].item() == pytest.approx(0.0)
    loss, m = ipo.ipo_loss(*args, tau=0.05)
    assert loss.item() == pytest.approx(81.0)
    assert m["margin"].item() == pytest.approx(1.0) and m["reward_accuracy"].item() == 1.0
    assert ipo.IPOParams().tau == 0.05  # target 10, the bandit code's margin


def test_ipo_gradient_pulls_margin_to_target_and_stays_finite():
    pi_w = torch.tensor([0.0, 1e9, -1e9], requires_grad=True)
    zeros = torch.zeros(3)
    loss, _ = ipo.ipo_loss(pi_w, zeros, zeros, zeros, tau=0.5)  # target 1
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(pi_w.grad).all()
    assert pi_w.grad[0].item() == pytest.approx(-2.0)  # 2 (0 - 1): raise the margin
    assert pi_w.grad[1].item() > 0 and pi_w.grad[2].item() < 0  # overshoot is pulled back (unlike DPO)


def test_ipo_mean_normalisation_divides_by_length():
    b = LogProbBatch(
        logps={"chosen": torch.tensor([-4.0]), "rejected": torch.tensor([-6.0])},
        tokens={"chosen": TokenLogProbs(torch.tensor([[-2.0, -2.0]]), torch.ones(1, 2)),
                "rejected": TokenLogProbs(torch.tensor([[-2.0, -2.0, -2.0]]), torch.ones(1, 3))},
        ref_logps={"chosen": torch.tensor([-2.0]), "rejected": torch.tensor([-3.0])},
    )
    summed, _ = ipo.preference_objective(b, ipo.IPOParams(tau=0.5))
    mean, _ = ipo.preference_objective(b, ipo.IPOParams(tau=0.5, normalize="mean"))
    assert summed.item() == pytest.approx((-2.0 - (-3.0) - 1.0) ** 2)  # summed h_w = -2, h_l = -3: loss 0
    assert mean.item() == pytest.approx((-1.0 - (-1.0) - 1.0) ** 2)  # per-token h_w = h_l = -1: loss 1


# -- Pref-FT ----------------------------------------------------------------------------------------------


def test_pref_ft_trains_only_on_chosen(tiny_lm):
    ctx = RoundContext(round=0, rounds=1, seed=0, params=pref_ft.PrefFTParams(), data=toy_training_data(tiny_lm.encoder),
                       policy=tiny_lm, reference=None, rng=random.Random(0), state={})
    rows = pref_ft.sampler(ctx)
    assert len(rows) == 8 and all(list(r.seqs) == ["chosen"] for r in rows)
    b = LogProbBatch(logps={"chosen": torch.tensor([-2.0, -6.0])},
                     tokens={"chosen": TokenLogProbs(torch.zeros(2, 3), torch.tensor([[1.0, 1, 0], [1, 1, 1]]))})
    loss, _ = pref_ft.objective(b, pref_ft.PrefFTParams())
    assert loss.tolist() == [2.0, 6.0]
    loss, _ = pref_ft.objective(b, pref_ft.PrefFTParams(normalize="mean"))
    assert loss.tolist() == [1.0, 2.0]


# -- on-policy DPO / IPO ----------------------------------------------------------------------------------


def _online_batch(weight):
    b = LogProbBatch(
        logps={"chosen": torch.tensor([-1.0, -1.0]), "rejected": torch.tensor([-2.0, -2.0])},
        tokens={},
        ref_logps={"chosen": torch.tensor([-1.5, -1.5]), "rejected": torch.tensor([-1.5, -1.5])},
        values={"weight": torch.tensor(weight), "online": torch.tensor([1.0, 0.0]),
                "reward_chosen": torch.tensor([0.9, 0.0]), "reward_rejected": torch.tensor([0.1, 0.0])},
    )
    return b


def test_online_objectives_are_dpo_and_ipo_times_weight():
    b = _online_batch([1.0, 0.0])
    loss, m = online_dpo.dpo_objective(b, online_dpo.OnlineDPOParams(beta=0.1))
    ref, _ = dpo_loss(b.logps["chosen"], b.logps["rejected"], b.ref_logps["chosen"], b.ref_logps["rejected"], beta=0.1)
    assert loss.tolist() == pytest.approx([ref[0].item(), 0.0])
    assert m["reward_gap"].item() == pytest.approx(0.8)  # over online rows only
    loss, _ = online_dpo.ipo_objective(b, online_dpo.OnlineIPOParams(tau=0.05))
    assert loss.tolist() == pytest.approx([81.0, 0.0])


class SumReward:
    """A deterministic, picklable reward that varies between samples."""

    def __call__(self, prompt, completion) -> float:
        return float(sum(completion.ids) % 7)


def _ctx(tiny_lm, params, rnd=0) -> RoundContext:
    return RoundContext(round=rnd, rounds=2, seed=0, params=params, data=toy_training_data(tiny_lm.encoder),
                        policy=tiny_lm, reference=tiny_lm, rng=random.Random(rnd), state={"reward": SumReward()})


def test_online_sampler_ranks_fresh_pairs_and_mixes_offline(tiny_lm):
    params = online_dpo.OnlineDPOParams(n=3, max_new_tokens=2, mix=0.5)
    rows = online_dpo.sampler(_ctx(tiny_lm, params))
    online = [r for r in rows if r.values["online"] == 1.0]
    offline = [r for r in rows if r.values["online"] == 0.0]
    assert online and len(offline) == len(online)  # mix 0.5: as many offline as online pairs
    assert all(r.values["reward_chosen"] > r.values["reward_rejected"] for r in online)
    assert all(len(r.seqs["chosen"].response) == 2 for r in online)
    assert all(r.values["weight"] == 1.0 for r in rows)
    best_worst = online_dpo.sampler(_ctx(tiny_lm, online_dpo.OnlineDPOParams(n=3, max_new_tokens=2,
                                                                            pairs="best-worst")))
    # the same (seed, round) draws the same samples: one pair per prompt whose samples do not all tie
    from harness.training.pg import rollouts

    samples = rollouts(_ctx(tiny_lm, params), n=3, max_new_tokens=2)
    groups = [[o.reward for o in samples if o.group == g] for g in range(8)]
    assert len(best_worst) == sum(max(rs) > min(rs) for rs in groups) > 0
    assert len({r.seqs["chosen"].prompt.ids for r in best_worst}) == len(best_worst)
    assert all(r.values["reward_chosen"] > r.values["reward_rejected"] for r in best_worst)


def test_online_sampler_all_ties_gives_a_zero_weight_placeholder(tiny_lm):
    ctx = _ctx(tiny_lm, online_dpo.OnlineIPOParams(n=2, max_new_tokens=1))
    del ctx.state["reward"]  # the toy benchmark's exact-match reward: 0 for every random sample
    rows = online_dpo.sampler(ctx)
    assert len(rows) == 1 and rows[0].values["weight"] == 0.0
    assert rows[0].seqs["chosen"].response == ()


def _run(host, method, bench="didactic-r1", **train):
    cell = resolve(CellConfig(model="tiny:nano", method=method, benchmark=bench,
                              train={k: str(v) for k, v in train.items()}), host)
    return run_cell(cell, host, out_dir=None, progress=False, log=lambda m: None)


def test_online_dpo_raises_expected_reward_under_r1(host):
    rec = _run(host, "online-dpo", rounds=3)
    before = rec["rounds"][0]["metrics"]["didactic-r1/expected_reward"]
    after = rec["final"]["didactic-r1/expected_reward"]
    assert before == pytest.approx(0.039, abs=0.005)  # the warm start fits pi_ref
    assert after > 0.3 > before
    assert rec["final"]["didactic-r1/kl_ref"] > 0.5


@pytest.mark.parametrize("method", ["ipo", "pref-ft", "online-ipo"])
def test_preference_methods_run_on_the_bandit(host, method):
    # every method trained on preferences ranked by R2 must end above pi_ref's E[R2] (0.377): the gain,
    # paired by seed over 3 seeds, has a 95% t-interval above 0
    from harness.results.leaderboard import Stat

    gains = []
    for seed in (0, 1, 2):
        cell = resolve(CellConfig(model="tiny:nano", method=method, benchmark="didactic-r2", seed=seed,
                                  train={"rounds": "1", "steps": "10"}), host)
        rec = run_cell(cell, host, out_dir=None, progress=False, log=lambda m: None)
        before = rec["rounds"][0]["metrics"]["didactic-r2/expected_reward"]
        assert rec["status"] == "done" and before == pytest.approx(0.377, abs=0.005)  # the warm start: pi_ref
        gains.append(rec["final"]["didactic-r2/expected_reward"] - before)
    gain = Stat.of(gains)
    assert gain.mean - gain.half > 0, f"{method}: gain {gain.mean:+.4f} ± {gain.half:.4f} covers 0"
