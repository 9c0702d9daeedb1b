"""IRL reward model from demonstrations: which samples are positives, the held-out ranking, the uses."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from alignment_harness_plugins.methods import irl_rm
from alignment_harness_plugins.methods.irl_rm import ClosedFormReward, fit_reward_model
from harness.core.data import Completion
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.training.divergence import Discriminator, ranking_auc
from harness.training.trainer import TrainConfig
from tests.test_gsil import host, make_trainer, record_rows  # noqa: F401 - fixtures

CFG = TrainConfig(rounds=1, steps=2, batch_size=10, lr=1e-3)


def fresh_samples(lm: LM, prompts: list, seed: int) -> list[Completion]:
    return [c for cs in lm.generate(prompts, n=20, temperature=1.0, max_new_tokens=1, seed=seed) for c in cs]


def heldout_auc(trainer, pi_init: LM) -> float:
    """Ranking of fresh pi_SFT samples (the policy, started from pi_SFT) over fresh pi_init samples."""
    prompts = list(trainer.data.prompts())
    sft, init = fresh_samples(trainer.policy, prompts, 123), fresh_samples(pi_init, prompts, 456)
    rm = trainer.state["reward"]
    scores = rm.batch([c.prompt for c in sft + init], sft + init)
    return ranking_auc(scores[: len(sft)], scores[len(sft) :])


@pytest.mark.parametrize("rm", ["init-sft", "closed-form"])
def test_the_reward_model_ranks_heldout_sft_samples_above_initial_policy_samples(host, rm):  # noqa: F811
    t = make_trainer(host, "irl-rm", CFG, warm=True, rm=rm)
    init_model = copy.deepcopy(t.policy.model)
    pi_init = LM(init_model, t.policy.tokenizer, HFEngine(init_model, t.policy.tokenizer))
    fit_reward_model(t.round_context(0))
    fit = t.state["irl/fit"]
    assert fit["rm_heldout_auc"] > 0.8  # measured by the hook on its own fresh samples
    assert heldout_auc(t, pi_init) > 0.8  # and again on samples it never saw
    if rm == "init-sft":
        assert isinstance(t.state["reward"], Discriminator) and fit["rm_train_accuracy"] > 0.75
    else:
        assert isinstance(t.state["reward"], ClosedFormReward)
    for p, q in zip(t.policy.model.parameters(), t.reference.model.parameters(), strict=True):
        assert torch.equal(p, q)  # init_from_sft: policy and reference both start from pi_SFT


def test_closed_form_is_the_log_ratio_of_sft_to_init_and_pickles(host):  # noqa: F811
    t = make_trainer(host, "irl-rm", CFG, rm="closed-form", sft_steps=5, rm_samples=2, init_from_sft=False)
    init_model = copy.deepcopy(t.policy.model)
    fit_reward_model(t.round_context(0))
    rm = t.state["reward"]
    outs = t.policy.generate(list(t.data.prompts())[:3], n=2, max_new_tokens=1, seed=0)
    comps = [c for cs in outs for c in cs]
    prompts, seqs = [c.prompt for c in comps], [c.as_sequence() for c in comps]
    tok = t.policy.tokenizer
    expected = LM(rm.sft, tok).logprobs(seqs) - LM(init_model, tok).logprobs(seqs)
    got = rm.batch(prompts, comps)
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    assert pickle.loads(pickle.dumps(rm)).batch(prompts, comps) == pytest.approx(got, abs=1e-6)


@pytest.mark.parametrize(("rm", "positives", "negatives"), [
    ("init-sft", "sft", "init"), ("init-demo", "demo", "init"), ("sft-demo", "demo", "sft"),
])
def test_each_variant_fits_the_named_sides(host, monkeypatch, rm, positives, negatives):  # noqa: F811
    seen = {}

    def spy(self, data, **kwargs):
        seen["pos"] = [s for s, y in data if y == 1.0]
        seen["neg"] = [s for s, y in data if y == 0.0]
        return {"d_loss": 0.0}

    monkeypatch.setattr(Discriminator, "fit", spy)
    t = make_trainer(host, "irl-rm", CFG, rm=rm, sft_steps=5, rm_samples=2)
    demos = list(t.data.demonstrations())
    fit_reward_model(t.round_context(0))

    def kind(seqs):
        return "demo" if seqs == demos else "sample"

    assert (kind(seen["pos"]) == "demo") == (positives == "demo")
    assert (kind(seen["neg"]) == "demo") == (negatives == "demo")
    assert len(seen["neg"]) == 2 * len(t.data.prompts())  # rm_samples per prompt of the negative policy


@pytest.mark.parametrize("use", ["bon", "rloo", "ppo"])
def test_policy_rounds_use_the_reward_model(host, use):  # noqa: F811
    t = make_trainer(host, "irl-rm", CFG, use=use, sft_steps=5, rm_samples=2, rm_steps=5, n=4)
    kept = record_rows(t)
    records = t.train_round(0)
    assert "rm_heldout_auc" in records[-1].metrics and "reward" in records[-1].metrics
    assert t.state["reward"] is not None and irl_rm.IRLRMParams().rm == "init-sft"
    # every row's reward is the fitted reward model's score of its sequence, not the benchmark's reward
    rm, rows = t.state["reward"], kept[0]
    role = "best" if use == "bon" else "sample"
    seqs = [r.seqs[role] for r in rows]
    comps = [Completion(s.prompt, s.response, "") for s in seqs]
    scores = rm.batch([s.prompt for s in seqs], comps)
    assert [r.values["reward"] for r in rows] == pytest.approx(scores, abs=1e-5)
    truth = [t.data.reward(s.prompt, c) for s, c in zip(seqs, comps, strict=True)]
    assert max(abs(a - b) for a, b in zip(scores, truth, strict=True)) > 1e-3
