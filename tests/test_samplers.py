"""The sampler library on a tiny real model and the toy benchmark's data."""

from __future__ import annotations

import random

import pytest
import torch

from harness.core.context import RoundContext
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.training import pg, samplers
from tests.conftest import toy_training_data


def lm_of(seed: int) -> LM:
    m = load_model("tiny:nano", seed=seed)
    # A random tiny model at init is nearly uniform; sharpen it so that two seeds generate differently.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return LM(m.model, m.tokenizer, HFEngine(m.model, m.tokenizer))


@pytest.fixture(scope="module")
def policy():
    return lm_of(0)


@pytest.fixture(scope="module")
def reference():
    return lm_of(1)


def ctx_of(policy, reference, reward=None, rnd=0) -> RoundContext:
    state = {"reward": reward} if reward else {}
    return RoundContext(round=rnd, rounds=2, seed=0, params=None, data=toy_training_data(policy.encoder),
                        policy=policy, reference=reference, rng=random.Random(rnd), state=state)


def length_reward(prompt, completion) -> float:
    return float(len(completion.ids))


def test_offline(policy, reference):
    ctx = ctx_of(policy, reference)
    rows = samplers.offline_demonstrations(ctx)
    assert len(rows) == 8 and list(rows[0].seqs) == ["demo"]
    assert len(samplers.offline_demonstrations(ctx, limit=3)) == 3
    rows = samplers.offline_preferences(ctx)
    assert set(rows[0].seqs) == {"chosen", "rejected"}


def test_self_generated_samples_the_named_source(policy, reference):
    ctx = ctx_of(policy, reference)
    gen = {"max_new_tokens": 6}
    rows = samplers.self_generated(ctx, source="reference", generation=gen)
    assert len(rows) == 8 and set(rows[0].seqs) == {"real", "generated"}
    prompts = [r.seqs["real"].prompt for r in rows]
    expected = reference.generate(prompts, max_new_tokens=6)
    assert [r.seqs["generated"].response for r in rows] == [c[0].ids for c in expected]
    from_policy = samplers.self_generated(ctx, source="policy", generation=gen)
    assert [r.seqs["generated"].response for r in from_policy] != [r.seqs["generated"].response for r in rows]
    two = samplers.self_generated(ctx, source="policy", n=2, generation={"max_new_tokens": 6, "temperature": 1.0})
    assert len(two) == 16


def test_on_policy_preferences_rank_by_reward(policy, reference):
    ctx = ctx_of(policy, reference, reward=length_reward)
    rows = samplers.on_policy_preferences(ctx, n=4, generation={"max_new_tokens": 8})
    assert rows and all(r.values["reward_chosen"] > r.values["reward_rejected"] for r in rows)
    assert all(len(r.seqs["chosen"].response) > len(r.seqs["rejected"].response) for r in rows)
    # the same (seed, round) draws the same samples: count the untied pairs by hand
    samples = pg.rollouts(ctx, n=4, max_new_tokens=8)
    groups = [[o.reward for o in samples if o.group == g] for g in range(8)]
    untied = sum(a != b for rs in groups for i, a in enumerate(rs) for b in rs[i + 1:])
    assert len(rows) == untied > 0
    bw = samplers.on_policy_preferences(ctx, n=4, pairs="best-worst", generation={"max_new_tokens": 8})
    assert len(bw) == sum(max(rs) > min(rs) for rs in groups) > 0
    assert len({r.seqs["chosen"].prompt.ids for r in bw}) == len(bw)  # one pair per prompt
    by_prompt = {samples[4 * g].sequence.prompt.ids: rs for g, rs in enumerate(groups)}
    for r in bw:  # the best against the worst of its prompt
        rs = by_prompt[r.seqs["chosen"].prompt.ids]
        assert (r.values["reward_chosen"], r.values["reward_rejected"]) == (max(rs), min(rs))


def test_best_of_n_and_rollouts(policy, reference):
    ctx = ctx_of(policy, reference, reward=length_reward)
    rows = samplers.best_of_n(ctx, n=4, with_worst=True, generation={"max_new_tokens": 8})
    assert len(rows) == 8
    assert all(r.values["reward"] >= r.values["reward_worst"] for r in rows)
    samples = pg.rollouts(ctx, n=3, max_new_tokens=8)
    assert len(samples) == 24
    assert [(o.group, o.index) for o in samples[:6]] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert all(o.reward == len(o.sequence.response) for o in samples)


def test_benchmark_reward_is_the_default(policy, reference):
    ctx = ctx_of(policy, reference)
    rows = pg.rollouts(ctx, n=2, max_new_tokens=4)
    assert {o.reward for o in rows} <= {0.0, 1.0}
