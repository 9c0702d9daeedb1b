"""Best-of-n when a prompt's samples all tie (e.g. every GSM8K answer wrong): skipped, or replaced by the
prompt's demonstration, and counted; never the first failed sample imitated as "best"."""

from __future__ import annotations

import random

import pytest
import torch

from alignment_harness_plugins.methods import best_of_n
from harness.core.context import RoundContext
from harness.core.errors import HarnessError
from harness.core.params import apply_overrides
from harness.models.logprobs import LogProbBatch
from tests.conftest import ANSWERS, toy_training_data


def _ctx(lm, params, reward=None) -> RoundContext:
    return RoundContext(round=0, rounds=1, seed=0, params=params, data=toy_training_data(lm.encoder), policy=lm,
                        reference=None, rng=random.Random(0), state={"reward": reward} if reward else {})


class HalfTied:
    """0 for the prompts "add 1 2" and "say hi" (their samples all tie), a varying reward elsewhere."""

    def __call__(self, prompt, completion) -> float:
        if prompt.meta["answer"] in ("3", "hi"):
            return 0.0
        return float(len(completion.ids)) + 0.01 * float(sum(completion.ids) % 97)


def test_all_tied_prompts_are_skipped_and_counted(tiny_lm):
    # the benchmark's own reward (exact answer) is 0 for every sample of an untrained model: all tie
    params = best_of_n.BestOfNParams(n=4, max_new_tokens=3)
    rows = best_of_n.sampler(_ctx(tiny_lm, params))
    assert len(rows) == 1 and rows[0].values["weight"] == 0.0 and rows[0].seqs["best"].response == ()
    assert rows[0].values["tied"] == len(ANSWERS) and rows[0].values["demo_fallbacks"] == 0
    # the old behaviour, on request: the first (failed) sample of every prompt is kept
    rows = best_of_n.sampler(_ctx(tiny_lm, best_of_n.BestOfNParams(n=4, max_new_tokens=3, on_tie="keep")))
    assert len(rows) == len(ANSWERS) and all(r.values["weight"] == 1.0 for r in rows)


def test_tied_prompts_fall_back_to_their_demonstration(tiny_lm):
    params = best_of_n.BestOfNParams(n=4, max_new_tokens=3, on_tie="demonstration", beta=0.1)
    rows = best_of_n.sampler(_ctx(tiny_lm, params))
    demos = {tuple(d.prompt.ids): d for d in tiny_lm_demos(tiny_lm)}
    assert len(rows) == len(ANSWERS) and all(r.values["demo_fallbacks"] == len(ANSWERS) for r in rows)
    for r in rows:
        assert r.seqs["best"] == demos[tuple(r.seqs["best"].prompt.ids)]  # the demonstration, not a sample
        assert set(r.seqs) == {"best", "worst"} and r.values["tied"] == 0


def tiny_lm_demos(lm):
    return toy_training_data(lm.encoder).demonstrations()


def test_only_the_tied_prompts_are_skipped(tiny_lm):
    params = best_of_n.BestOfNParams(n=4, max_new_tokens=3)
    rows = best_of_n.sampler(_ctx(tiny_lm, params, HalfTied()))
    answers = {r.seqs["best"].prompt.meta["answer"] for r in rows}
    assert answers.isdisjoint({"3", "hi"}) and len(rows) >= 1
    assert all(r.values["tied"] == len(ANSWERS) - len(rows) >= 2 for r in rows)
    assert all(r.values["reward"] > r.values["reward_worst"] for r in rows)


def test_the_placeholder_row_gives_no_gradient_and_the_counts_reach_the_step_metrics():
    w = torch.tensor([0.5], requires_grad=True)
    logp = (w * torch.ones(1, 2)).sum(-1)  # a log-prob that depends on a parameter
    batch = LogProbBatch(logps={"best": logp}, tokens={}, values={"reward": torch.zeros(1), "reward_worst": torch.zeros(1),
                                                       "weight": torch.zeros(1), "tied": torch.tensor([8.0]),
                                                       "demo_fallbacks": torch.zeros(1)})
    loss, metrics = best_of_n.objective(batch, best_of_n.BestOfNParams())
    loss.sum().backward()
    assert w.grad.item() == 0.0 and metrics["tied_prompts"].item() == 8.0
    with pytest.raises(HarnessError, match=r"^method best-of-n: parameter 'on_tie' expects 'skip' \| 'demonstration' \| "
                       r"'keep', got 'first'$"):
        apply_overrides(best_of_n.BestOfNParams, {"on_tie": "first"}, where="method best-of-n", from_string=True)
