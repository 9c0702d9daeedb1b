"""The didactic bandit benchmark (Tajwar et al. 2024): π_ref, expert, metrics, data, reward, warm start, eval."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

import alignment_harness_plugins.benchmarks.didactic as did
from harness.core.context import DataContext, EvalContext, WarmStartContext
from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.models.text import PromptEncoder
from harness.models.tiny import build_tokenizer

HAS_HF_ENGINE = importlib.util.find_spec("harness.engines.hf") is not None
R1 = did.reward_values(70)
R2 = did.reward_values(20)


def _specs() -> dict:
    registry = Registry()
    did.register_benchmarks(registry.register_callback("benchmark", "didactic"))
    return registry.specs["benchmark"]


SPECS = _specs()


# -- π_ref and the expert ------------------------------------------------------------------------------


def test_pi_ref_matches_the_papers_monte_carlo_figures() -> None:
    p = did.pi_ref_probs()
    assert p.shape == (100,) and np.all(p > 0) and p.sum() == pytest.approx(1.0, abs=1e-12)
    assert 14 <= int(np.argmax(p[1:99])) + 1 <= 18  # the interior mode
    assert np.all((p[14:19] > 0.025) & (p[14:19] < 0.029))
    assert p[0] == pytest.approx(0.078, abs=0.002)
    assert p[99] == pytest.approx(0.042, abs=0.002)
    assert did.expected_reward(p, R1) == pytest.approx(0.039, abs=0.002)
    assert did.expected_reward(p, R2) == pytest.approx(0.38, abs=0.01)
    assert did.expected_reward_ref(70) == pytest.approx(did.expected_reward(p, R1))


def test_pi_ref_is_the_limit_of_the_papers_histogram() -> None:
    x = np.tanh(did.CAUCHY_LOC + did.CAUCHY_SCALE * np.random.default_rng(0).standard_cauchy(400_000))
    hist, _ = np.histogram(x, bins=100, range=(-1, 1))
    assert np.abs(hist / hist.sum() - did.pi_ref_probs()).max() < 0.002


def test_expert_concentrates_on_the_reward_peak() -> None:
    for reward, peak in ((R1, 70), (R2, 20)):
        expert = did.expert_probs(reward, 0.1)
        assert expert.sum() == pytest.approx(1.0) and int(np.argmax(expert)) == peak
        assert did.expected_reward(expert, reward) > 0.93
    assert did.expected_reward_expert(70) == pytest.approx(did.expected_reward(did.expert_probs(R1, 0.1), R1))
    # A huge temperature gives back π_ref.
    assert np.allclose(did.expert_probs(R1, 1e9), did.pi_ref_probs())


# -- metric formulas on hand-made distributions ----------------------------------------------------------


def test_kl_and_entropy_by_hand() -> None:
    p, q = np.array([0.5, 0.25, 0.25]), np.array([0.25, 0.25, 0.5])
    assert did.kl_divergence(p, q) == pytest.approx(0.25 * math.log(2))
    assert did.kl_divergence(q, p) == pytest.approx(0.25 * math.log(2))
    assert did.kl_divergence(p, p) == 0.0
    assert did.entropy(p) == pytest.approx(1.5 * math.log(2))
    assert did.kl_divergence([1.0, 0.0, 0.0], [0.5, 0.5, 0.0]) == pytest.approx(math.log(2))
    assert did.kl_divergence([0.5, 0.0, 0.5], [0.5, 0.5, 0.0]) == math.inf
    assert did.entropy([1.0, 0.0]) == 0.0


def test_action_distribution_renormalises_over_the_action_tokens() -> None:
    logprobs = np.log([0.1, 0.2, 0.2, 0.4, 0.1])  # vocabulary of 5; actions are ids 1..3
    probs, mass = did.action_distribution(logprobs, action_offset=1, n_actions=3)
    assert mass == pytest.approx(0.8)
    assert probs == pytest.approx([0.25, 0.25, 0.5])


def test_action_metrics_at_pi_ref_match_closed_forms() -> None:
    ref, tau = did.pi_ref_probs(), 0.1
    expert = did.expert_probs(R1, tau)
    log_z = math.log(float(np.sum(ref * np.exp(R1 / tau))))  # p* = ref exp(r/τ) / Z
    m = did.action_metrics(ref, R1, ref, expert)
    assert m["kl_ref"] == pytest.approx(0.0, abs=1e-12)
    assert m["expected_reward"] == pytest.approx(float(ref @ R1))
    assert m["reverse_kl"] == pytest.approx(log_z - float(ref @ R1) / tau)  # KL(ref‖p*)
    assert m["forward_kl"] == pytest.approx(float(expert @ R1) / tau - log_z)  # KL(p*‖ref)
    assert m["entropy"] == pytest.approx(-float(ref @ np.log(ref)))
    # The expert itself: no reverse or forward KL to itself.
    m = did.action_metrics(expert, R1, ref, expert)
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-9) and m["forward_kl"] == pytest.approx(0.0, abs=1e-9)


def test_sequence_helpers() -> None:
    assert did.token_actions((70, 258, 5), action_offset=0, length=4).tolist() == [70, -1, 5, -1]
    assert did.token_actions((105,), action_offset=5, length=1).tolist() == [-1]  # action 100 doesn't exist
    assert did.token_actions((75, 4), action_offset=5, length=2).tolist() == [70, -1]
    acts = np.array([[70, 60, -1]])
    assert did.sequence_reward(acts, R1).tolist() == pytest.approx([(1 + math.exp(-1)) / 3])
    probs = np.full(100, 0.01)
    assert did.sequence_logprob(acts, probs).tolist() == pytest.approx([2 * math.log(0.01) + math.log(1e-12)])


# -- registration, reward and data -----------------------------------------------------------------------


def test_registered_specs() -> None:
    assert set(SPECS) == {"didactic-r1", "didactic-r2", "didactic-multi-r1", "didactic-multi-r2"}
    for name, spec in SPECS.items():
        assert spec.version == "1" and "2404.14367" in spec.paper
        assert spec.provides == {"demonstrations", "preferences", "prompts", "reward"}
        assert spec.params is (did.DidacticMultiParams if "multi" in name else did.DidacticParams)
        assert spec.warm_start is not None


def _prompt(length: int, **meta: float) -> Prompt:
    return Prompt(ids=(257, 100), meta={"state": 0, "length": length, **meta})


def test_reward_single_and_multi() -> None:
    r1, r2 = SPECS["didactic-r1"].reward, SPECS["didactic-r2"].reward
    single = _prompt(1)
    assert r1(single, Completion(single, (70,), "")) == pytest.approx(1.0)
    assert r1(single, Completion(single, (60, 99), "")) == pytest.approx(math.exp(-1))  # only the first token
    assert r2(single, Completion(single, (20,), "")) == pytest.approx(1.0)
    assert r1(single, Completion(single, (258,), "")) == 0.0  # EOS is not an action
    assert r1(single, Completion(single, (), "")) == 0.0
    moved = _prompt(1, action_offset=5, width=20.0)
    assert r1(moved, Completion(moved, (95,), "")) == pytest.approx(math.exp(-1))  # action 90, width 20
    multi_r1 = SPECS["didactic-multi-r1"].reward
    multi = _prompt(9)
    assert multi_r1(multi, Completion(multi, (70,) * 9, "")) == pytest.approx(1.0)
    assert multi_r1(multi, Completion(multi, (70,) * 4 + (258,), "")) == pytest.approx(4 / 9)


def _data_ctx(seed: int = 0, **overrides: object) -> DataContext:
    params = did.DidacticMultiParams(**overrides)
    return DataContext(params=params, encoder=PromptEncoder(build_tokenizer()), seed=seed)


@pytest.mark.parametrize("name,length", [("didactic-r1", 1), ("didactic-multi-r2", 9)])
def test_data_shapes_and_determinism(name: str, length: int) -> None:
    spec = SPECS[name]
    prompts = spec.data("prompts", _data_ctx())
    assert [p.ids for p in prompts] == [(257, 100 + k) for k in range(10)]
    demos = spec.data("demonstrations", _data_ctx())
    assert len(demos) == 100 and all(len(d.response) == length for d in demos)
    assert all(0 <= t < 100 for d in demos for t in d.response)  # action tokens only, no EOS
    assert demos == spec.data("demonstrations", _data_ctx())
    assert demos != spec.data("demonstrations", _data_ctx(seed=1))
    pairs = spec.data("preferences", _data_ctx())
    assert len(pairs) == 100 and pairs == spec.data("preferences", _data_ctx())
    for pair in pairs:
        chosen = spec.reward(pair.prompt, Completion(pair.prompt, pair.chosen, ""))
        rejected = spec.reward(pair.prompt, Completion(pair.prompt, pair.rejected, ""))
        assert chosen > rejected and len(pair.chosen) == len(pair.rejected) == length
    # The demonstrations are the expert's: their mean reward is near E_{p*}[R].
    mean = np.mean([spec.reward(d.prompt, Completion(d.prompt, d.response, "")) for d in demos])
    peak = 70 if name.endswith("r1") else 20
    assert mean == pytest.approx(did.expected_reward_expert(peak), abs=0.05)


def test_data_respects_offsets_and_tokenizers_without_bos() -> None:
    demos = SPECS["didactic-r1"].data(
        "demonstrations", _data_ctx(action_offset=120, state_offset=10, n_states=2)
    )
    assert len(demos) == 20 and all(120 <= d.response[0] < 220 for d in demos)
    assert {d.prompt.ids for d in demos} == {(257, 10), (257, 11)}

    class NoBos:
        bos_token_id = eos_token_id = pad_token_id = None

        def __len__(self) -> int:
            return 300

    prompts = did.state_prompts(NoBos(), did.DidacticParams(n_states=2), peak=70, length=1)
    assert [p.ids for p in prompts] == [(100,), (101,)]


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(HarnessError, match="action_offset"):
        SPECS["didactic-r1"].data("prompts", _data_ctx(action_offset=200))
    with pytest.raises(HarnessError, match="overlap"):
        SPECS["didactic-r1"].data("prompts", _data_ctx(state_offset=50))
    with pytest.raises(HarnessError, match="is an action or state token"):
        SPECS["didactic-r1"].data(
            "prompts", _data_ctx(action_offset=162)
        )  # actions 162..261 hold the specials


# -- fake LMs with exact log-probs -------------------------------------------------------------------------


class RefLM:
    """A policy equal to π_ref on the action tokens (a tiny rest elsewhere), with exact log-probs."""

    def __init__(self) -> None:
        self.tokenizer = build_tokenizer()
        self.engine = self
        probs = np.full(len(self.tokenizer), 1e-9)
        probs[:100] = did.pi_ref_probs() * (1 - 1e-9 * (len(self.tokenizer) - 100))
        self.log_probs = np.log(probs)

    def next_token_logprobs(self, prompts: list[Prompt]) -> torch.Tensor:
        return torch.tensor(np.tile(self.log_probs, (len(prompts), 1)))

    def generate(self, prompts: list[Prompt], *, n: int, seed: int, max_new_tokens: int, **_: object) -> list:
        rng = np.random.default_rng(seed)
        draws = rng.choice(100, size=(len(prompts), n, max_new_tokens), p=did.pi_ref_probs())
        return [
            [Completion(p, tuple(int(a) for a in row), "") for row in rows]
            for p, rows in zip(prompts, draws, strict=True)
        ]

    def logprobs(self, seqs: list) -> torch.Tensor:
        return torch.tensor([float(sum(self.log_probs[t] for t in s.response)) for s in seqs])


def _eval_ctx(lm: object, params: object, seed: int = 0) -> EvalContext:
    return EvalContext(engine=None, lm=lm, encoder=PromptEncoder(build_tokenizer()), params=params, seed=seed)


def test_single_evaluate_is_exact() -> None:
    ref = did.pi_ref_probs()
    expert = did.expert_probs(R1, 0.1)
    result = SPECS["didactic-r1"].evaluate(_eval_ctx(RefLM(), did.DidacticParams()))
    m = result.metrics
    assert m["kl_ref"] == pytest.approx(0.0, abs=1e-9)
    assert m["action_mass"] == pytest.approx(1.0, abs=1e-6)
    assert m["expected_reward"] == pytest.approx(float(ref @ R1))
    assert m["reverse_kl"] == pytest.approx(did.kl_divergence(ref, expert))
    assert m["forward_kl"] == pytest.approx(did.kl_divergence(expert, ref))
    assert m["entropy"] == pytest.approx(did.entropy(ref))
    assert len(result.records) == 10 and result.records[0]["top_actions"] == [0, 99, 16, 15, 17]
    assert result.records[0]["top_probs"][0] == pytest.approx(ref[0])
    limited = SPECS["didactic-r1"].evaluate(
        EvalContext(None, RefLM(), None, did.DidacticParams(), 0, limit=3)
    )
    assert len(limited.records) == 3


def test_multi_evaluate_monte_carlo_at_pi_ref() -> None:
    ref = did.pi_ref_probs()
    expert = did.expert_probs(R1, 0.1)
    params = did.DidacticMultiParams(eval_samples=4000)
    m = SPECS["didactic-multi-r1"].evaluate(_eval_ctx(RefLM(), params)).metrics
    assert m["kl_ref"] == pytest.approx(0.0, abs=1e-5)  # log π(y) - log π_ref(y) is 0 sample by sample
    assert m["action_mass"] == 1.0
    assert m["expected_reward"] == pytest.approx(float(ref @ R1), abs=0.005)
    assert m["reverse_kl"] == pytest.approx(9 * did.kl_divergence(ref, expert), rel=0.03)
    assert m["forward_kl"] == pytest.approx(9 * did.kl_divergence(expert, ref), rel=0.03)
    assert m["entropy"] == pytest.approx(9 * did.entropy(ref), rel=0.03)
    assert m == SPECS["didactic-multi-r1"].evaluate(_eval_ctx(RefLM(), params)).metrics  # seeded


# -- the real tiny model ---------------------------------------------------------------------------------------


def _warm(name: str, seed: int = 0, **overrides: object) -> LM:
    loaded = load_model("tiny:nano", seed=0)
    engine = None
    if HAS_HF_ENGINE:
        from harness.engines.hf import HFEngine

        engine = HFEngine(loaded.model, loaded.tokenizer)
    lm = LM(loaded.model, loaded.tokenizer, engine)
    spec = SPECS[name]
    lm.model.eval()
    spec.warm_start(WarmStartContext(lm=lm, params=spec.params(**overrides), seed=seed))
    return lm


@pytest.fixture(scope="module")
def warm_single() -> LM:
    return _warm("didactic-r1")


def test_warm_start_fits_pi_ref(warm_single: LM) -> None:
    result = SPECS["didactic-r1"].evaluate(_eval_ctx(warm_single, did.DidacticParams()))
    m = result.metrics
    assert m["kl_ref"] < 0.05 and m["action_mass"] > 0.99
    assert m["expected_reward"] == pytest.approx(did.expected_reward_ref(70), abs=0.005)
    assert not warm_single.model.training  # the mode is restored


def test_warm_start_is_deterministic_and_leaves_the_global_rng_alone(warm_single: LM) -> None:
    state = torch.random.get_rng_state()
    again = _warm("didactic-r1")
    assert torch.equal(state, torch.random.get_rng_state())
    for (key, a), b in zip(
        warm_single.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
    multi_a = _warm("didactic-multi-r1", warm_steps=3).model.state_dict()
    multi_b = _warm("didactic-multi-r1", warm_steps=3).model.state_dict()
    assert all(torch.equal(multi_a[k], multi_b[k]) for k in multi_a)


@pytest.mark.skipif(not HAS_HF_ENGINE, reason="harness.engines.hf is not there yet")
def test_multi_end_to_end_with_the_hf_engine() -> None:
    lm = _warm("didactic-multi-r1")
    params = did.DidacticMultiParams(eval_samples=100)
    result = SPECS["didactic-multi-r1"].evaluate(_eval_ctx(lm, params))
    m = result.metrics
    assert m["action_mass"] > 0.95
    assert abs(m["kl_ref"]) < 0.2
    assert m["expected_reward"] == pytest.approx(did.expected_reward_ref(70), abs=0.03)
    assert len(result.records) == 10 and len(result.records[0]["samples"][0]) == 9


def test_each_setting_declares_its_range_and_is_refused_where_it_is_given():
    """Ranges the benchmark used to check by hand at run time are declared on its params instead (checked once,
    where the suite or --set gives a value)."""
    from alignment_harness_plugins.benchmarks.didactic import DidacticMultiParams
    from harness.core.errors import HarnessError
    from harness.core.params import apply_overrides

    for key, value, bound in (("tau", 0.0, "> 0"), ("width", -1.0, ">= 0"), ("n_states", 0, ">= 1"),
                              ("n_demos", -1, ">= 0"), ("warm_prefixes", 0, ">= 1"), ("eval_samples", 0, ">= 1")):
        with pytest.raises(HarnessError, match=rf"^didactic-m1: parameter '{key}' must be {bound}, got "):
            apply_overrides(DidacticMultiParams, {key: value}, where="didactic-m1")
    assert apply_overrides(DidacticMultiParams, {"width": 0.0}, where="x").width == 0.0  # 0 = exact match
