"""The bimodal didactic benchmarks of plugins/benchmarks/didactic_modes.py (findings item 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alignment_harness_plugins.benchmarks import didactic_modes as dm
from alignment_harness_plugins.benchmarks.didactic import (
    MULTI_LENGTH,
    expert_probs,
    pi_ref_probs,
    reward_values,
    sequence_logprob,
)
from harness.core.context import DataContext, EvalContext, WarmStartContext
from harness.core.data import Completion
from harness.core.plugins import get_host
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model


@pytest.fixture(scope="module")
def host():
    return get_host()


@pytest.fixture
def nano_lm():
    loaded = load_model("tiny:nano", seed=0)
    return LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))


def test_balanced_expert_puts_equal_mass_on_both_modes():
    p = dm.BimodalParams()
    peaks, heights, reward, ref, expert = dm.task(p)
    assert max(heights) == 1.0 and 0.7 < min(heights) < 0.9  # the mode pi_ref favours is lowered
    m = dm.mode_metrics(expert, peaks, p.width)
    assert m["mode_a_mass"] == pytest.approx(m["mode_b_mass"], abs=1e-6)
    assert m["off_mode_mass"] < 0.01
    unbalanced = dm.task(dm.BimodalParams(balanced=False))
    mu = dm.mode_metrics(unbalanced[4], peaks, p.width)
    assert mu["mode_a_mass"] > 5 * mu["mode_b_mass"]  # equal heights: pi_ref's 6:1 shows through
    assert np.allclose(expert, expert_probs(reward, p.tau, pi_ref_probs()))
    # pi_ref's own split: 29% near 30, 5% near 70
    r = dm.mode_metrics(ref, peaks, p.width)
    assert r["mode_a_mass"] == pytest.approx(0.285, abs=0.01) and r["mode_b_mass"] == pytest.approx(0.046, abs=0.01)


def test_single_token_data_reward_and_exact_metrics(host, nano_lm):
    spec = host.registry.benchmark("didactic-bimodal")
    p = spec.params(n_states=4, n_demos=500, n_pairs=5)
    ctx = DataContext(params=p, encoder=nano_lm.encoder, seed=0)
    demos = spec.data("demonstrations", ctx)
    actions = np.array([d.response[0] for d in demos])
    m = dm.mode_metrics(np.bincount(actions, minlength=100) / len(actions), (30.0, 70.0), 10.0)
    assert abs(m["mode_a_mass"] - 0.5) < 0.05 and abs(m["mode_b_mass"] - 0.5) < 0.05
    pairs = spec.data("preferences", ctx)
    assert len(pairs) == 20
    prompt = spec.data("prompts", ctx)[0]
    _, heights, *_ = dm.task(p)
    assert spec.reward(prompt, Completion(prompt, (70,), "")) == pytest.approx(1.0)
    assert spec.reward(prompt, Completion(prompt, (30,), "")) == pytest.approx(heights[0])
    assert spec.reward(prompt, Completion(prompt, (300,), "")) == 0.0  # not an action
    for pair in pairs:
        assert spec.reward(prompt, Completion(prompt, pair.chosen, "")) > \
            spec.reward(prompt, Completion(prompt, pair.rejected, ""))

    class ExpertLM:  # next-token distribution = p* exactly
        tokenizer = nano_lm.tokenizer

        def next_token_logprobs(self, prompts):
            out = torch.full((len(prompts), len(nano_lm.tokenizer)), -1e9, dtype=torch.float64)
            out[:, :100] = torch.log(torch.tensor(dm.task(p)[4]))
            return out

    res = spec.evaluate(EvalContext(engine=None, lm=ExpertLM(), encoder=nano_lm.encoder, params=p, seed=0))
    assert res.metrics["forward_kl"] == pytest.approx(0.0, abs=1e-9)
    assert res.metrics["reverse_kl"] == pytest.approx(0.0, abs=1e-9)
    assert res.metrics["min_mode_mass"] == pytest.approx(0.5, abs=0.01)


def test_warm_start_is_the_unimodal_bandits(host, nano_lm):
    spec = host.registry.benchmark("didactic-bimodal")
    p = spec.params(n_states=3, warm_steps=60)
    spec.warm_start(WarmStartContext(lm=nano_lm, params=p, seed=0))
    res = spec.evaluate(EvalContext(engine=None, lm=nano_lm, encoder=nano_lm.encoder, params=p, seed=0))
    assert res.metrics["kl_ref"] < 0.1  # fitted to pi_ref, whatever the reward
    assert res.metrics["mode_b_mass"] < 0.1


def test_multi_token_mixture_expert(host, nano_lm):
    p = dm.BimodalMultiParams()
    peaks, p_a, p_b = dm.mode_experts(p)
    pure_a = np.full((1, MULTI_LENGTH), 30)
    pure_b = np.full((1, MULTI_LENGTH), 70)
    mixed = np.array([[30, 70] * 4 + [30]])
    # log p* of a pure sequence: log(1/2) + its mode's product (the other mode is negligible)
    assert dm.mixture_logprob(pure_a, p_a, p_b)[0] == pytest.approx(
        math.log(0.5) + sequence_logprob(pure_a, p_a)[0], abs=1e-6)
    assert dm.mixture_logprob(mixed, p_a, p_b)[0] < dm.mixture_logprob(pure_b, p_a, p_b)[0] - 30
    modes = dm.sequence_modes(np.concatenate([pure_a, pure_b, mixed]), peaks, p.width)
    assert modes["mode_a_fraction"] == pytest.approx(1 / 3) and modes["mixed_fraction"] == pytest.approx(1 / 3)
    assert dm.topic_reward(pure_a, peaks, p.width)[0] == pytest.approx(1.0)
    assert dm.topic_reward(mixed, peaks, p.width)[0] == pytest.approx(5 / 9, abs=1e-3)
    # the reward is tau * log(p* / pi_ref)
    ratio = dm.expert_log_ratio(pure_b, p)[0]
    assert ratio == pytest.approx(p.tau * (dm.mixture_logprob(pure_b, p_a, p_b)[0]
                                            - sequence_logprob(pure_b, pi_ref_probs())[0]))
    spec = host.registry.benchmark("didactic-bimodal-multi")
    sp = spec.params(n_states=4, n_demos=50)
    demos = spec.data("demonstrations", DataContext(params=sp, encoder=nano_lm.encoder, seed=0))
    acts = np.array([d.response for d in demos])
    dmodes = dm.sequence_modes(acts, peaks, sp.width)
    assert dmodes["mixed_fraction"] < 0.02  # a demonstration stays in one mode (p*: ~0.001) ...
    assert 0.35 < dmodes["mode_a_fraction"] < 0.65  # ... half of them each
    prompt = demos[0].prompt
    assert spec.reward(prompt, Completion(prompt, tuple(int(a) for a in pure_b[0]), "")) == pytest.approx(ratio)
    assert reward_values(70.0)[70] == 1.0


def test_multi_token_evaluation_matches_monte_carlo_under_pi_ref(host, nano_lm):
    # after the warm start the policy is pi_ref at every position (kl_ref ~ 0); its Monte Carlo metrics must
    # then agree, within 4 standard errors of 256 samples, with the same quantities computed here with numpy
    # from pi_ref and the two per-mode experts: a swapped KL, a wrong sign or a wrong mode count would not
    spec = host.registry.benchmark("didactic-bimodal-multi")
    p = spec.params(n_states=2, eval_samples=256)
    spec.warm_start(WarmStartContext(lm=nano_lm, params=p, seed=0))
    res = spec.evaluate(EvalContext(engine=nano_lm.engine, lm=nano_lm, encoder=nano_lm.encoder, params=p, seed=0))
    m = res.metrics
    assert abs(m["kl_ref"]) < 0.02 and m["action_mass"] == 1.0
    ref = pi_ref_probs()
    peaks, p_a, p_b = dm.mode_experts(p)
    rng = np.random.default_rng(123)
    y = rng.choice(len(ref), size=(20000, MULTI_LENGTH), p=ref)
    draws = dm._expert_draws(rng, (20000,), p_a, p_b)
    expected = {
        "reverse_kl": sequence_logprob(y, ref) - dm.mixture_logprob(y, p_a, p_b),
        "forward_kl": dm.mixture_logprob(draws, p_a, p_b) - sequence_logprob(draws, ref),
        "entropy": -sequence_logprob(y, ref),
        "expected_reward": dm.expert_log_ratio(y, p),
    }
    for name, x in expected.items():
        se = x.std() / math.sqrt(256)
        assert abs(m[name] - x.mean()) < 4 * se, f"{name}: {m[name]:.3f} vs {x.mean():.3f} ± {se:.3f}"
    for name, v in dm.sequence_modes(y, peaks, p.width).items():
        assert abs(m[name] - v) < 4 * math.sqrt(v * (1 - v) / 256) + 1e-9, f"{name}: {m[name]:.3f} vs {v:.3f}"
