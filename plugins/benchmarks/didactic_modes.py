"""A bimodal didactic bandit for mass-covering versus mode-seeking (Sun 2024, arXiv 2403.12017).

**The question.** Imitating demonstrations by maximum likelihood (SFT) minimises the forward KL
KL(p*‖π), which is *mass-covering*: π must put mass wherever the expert does, and, when it cannot fit
the expert exactly, it spreads. The reverse KL KL(π‖p*) (adversarial imitation with an AIRL reward;
GSIL's density-ratio view) is *mode-seeking*: π is punished for mass where the expert has none and so
concentrates on modes, possibly dropping one. On the Tajwar et al. bandit the expert has a single mode,
so both behaviours look alike; here the expert has **two** modes.

**The task** (``didactic-bimodal``): the single-token bandit of
:mod:`alignment_harness_plugins.benchmarks.didactic` (same states, action tokens, π_ref, warm start,
exact metrics) with the reward

    R(a) = max(h_a exp(-((a - peak_a) / w)^2), h_b exp(-((a - peak_b) / w)^2)),

peaks at actions 30 and 70 by default, and the expert ``p* ∝ π_ref · exp(R / τ)`` (τ = 0.1) giving the
demonstrations, as in the unimodal bandit. π_ref has about 6x more mass near 30 than near 70, so with
equal heights p* would be 86% / 14%; with ``balanced = true`` (default) the heights are set so that p*
puts the SAME mass on both modes (the higher-mass peak gets height ``1 - τ log(m_a / m_b)``, about 0.82;
the other keeps height 1).

**Metrics** (exact, from the next-token distribution renormalised over the action tokens, averaged over
states): ``expected_reward``, ``kl_ref``, ``forward_kl`` = KL(p*‖π), ``reverse_kl`` = KL(π‖p*),
``entropy`` (all from :func:`~alignment_harness_plugins.benchmarks.didactic.action_metrics`), plus

- ``mode_a_mass`` / ``mode_b_mass``: π's mass within ``w`` of each peak (p*: 0.50 / 0.50 balanced);
- ``min_mode_mass``: the smaller of the two (near 0: a mode is dropped);
- ``off_mode_mass``: 1 - both (p*: 0.001): mass spread where the expert has (almost) none;
- ``action_mass``: probability on action tokens at all.

**Reuse.** Everything except the reward and the extra metrics comes from ``didactic``'s public functions:
:func:`~alignment_harness_plugins.benchmarks.didactic.state_prompts`, ``pi_ref_probs``,
``reward_values``, ``expert_probs``, ``action_distribution``, ``action_metrics``, ``token_actions``,
and the warm start and parameter checks of a :func:`~alignment_harness_plugins.benchmarks.didactic.make_spec`
bandit (the warm start fits π_ref and does not depend on the reward).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignment_harness_plugins.benchmarks.didactic import (
    CAUCHY_LOC,
    MULTI_LENGTH,
    N_ACTIONS,
    DidacticMultiParams,
    DidacticParams,
    action_distribution,
    action_metrics,
    expert_probs,
    make_spec,
    pi_ref_probs,
    reward_values,
    sequence_logprob,
    sequence_reward,
    state_prompts,
    token_actions,
)
from alignment_harness_plugins.benchmarks.didactic import _warm_start as _didactic_warm_start
from harness import (
    BenchmarkSpec,
    Completion,
    DataContext,
    EvalContext,
    EvalResult,
    HarnessError,
    MetricSpec,
    Pair,
    Prompt,
    Sequence,
    WarmStartContext,
    hookimpl,
    param,
)

PAPER = "Sun 2024, arXiv 2403.12017 (forward vs reverse KL in alignment from demonstrations); bandit: Tajwar et al. 2024"
NAME = "didactic-bimodal"
MULTI_NAME = "didactic-bimodal-multi"
# Random streams of this module (the unimodal bandit uses 1..5).
_STREAMS = {"demonstrations": 11, "preferences": 12, "eval_generate": 13, "eval_expert": 14}


@dataclass(frozen=True)
class BimodalParams(DidacticParams):
    """The single-token bandit's parameters plus the two peaks."""

    peak_a: float = param(30.0, "action of the first reward peak (pi_ref has more mass here)")
    peak_b: float = param(70.0, "action of the second reward peak")
    balanced: bool = param(True, "heights chosen so that the expert puts equal mass on both modes (else both 1)")
    ref_loc: float = param(CAUCHY_LOC, "location of pi_ref's tanh-Cauchy, the starting policy (0: symmetric "
                           "about action 49.5, so that peaks 30 and 69 start with equal mass: the control)")


# -- pure helpers -------------------------------------------------------------------------------------


def bimodal_reward(peaks: tuple[float, float], heights: tuple[float, float], width: float = 10.0) -> np.ndarray:
    """``R(a) = max_i h_i exp(-((a - peak_i) / width)^2)`` for every action."""
    return np.maximum(heights[0] * reward_values(peaks[0], width), heights[1] * reward_values(peaks[1], width))


def mode_masks(peaks: tuple[float, float], width: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the actions within ``width`` of each peak."""
    a = np.arange(N_ACTIONS, dtype=np.float64)
    return np.abs(a - peaks[0]) <= width, np.abs(a - peaks[1]) <= width


def balanced_heights(peaks: tuple[float, float], width: float, tau: float, iters: int = 20,
                     ref: np.ndarray | None = None) -> tuple[float, float]:
    """Heights ``(h_a, h_b)``, the larger 1, such that ``p* ∝ π_ref exp(R / τ)`` has equal mass within
    ``width`` of each peak (fixed-point iteration on ``h = 1 - τ log(m_heavy / m_light)``)."""
    ref = pi_ref_probs() if ref is None else ref
    in_a, in_b = mode_masks(peaks, width)
    h = [1.0, 1.0]
    for _ in range(iters):
        p = expert_probs(bimodal_reward(peaks, (h[0], h[1]), width), tau, ref)
        ma, mb = float(p[in_a].sum()), float(p[in_b].sum())
        heavy, light = (0, 1) if ma >= mb else (1, 0)
        ratio = max(ma, mb) / max(min(ma, mb), 1e-300)
        if abs(math.log(ratio)) < 1e-9:
            break
        h[heavy] = h[heavy] - tau * math.log(ratio)
        h[light] = 1.0
        top = max(h)
        h = [x / top for x in h] if top > 1.0 else h
    return h[0], h[1]


def task(p: BimodalParams) -> tuple[tuple[float, float], tuple[float, float], np.ndarray, np.ndarray, np.ndarray]:
    """``(peaks, heights, reward, pi_ref, expert)`` of a parameter set."""
    peaks = (float(p.peak_a), float(p.peak_b))
    ref = pi_ref_probs(loc=p.ref_loc)
    heights = balanced_heights(peaks, p.width, p.tau, ref=ref) if p.balanced else (1.0, 1.0)
    reward = bimodal_reward(peaks, heights, p.width)
    return peaks, heights, reward, ref, expert_probs(reward, p.tau, ref)


def mode_metrics(probs: np.ndarray, peaks: tuple[float, float], width: float) -> dict[str, float]:
    """Mass within ``width`` of each peak, the smaller of the two and the mass outside both."""
    in_a, in_b = mode_masks(peaks, width)
    ma, mb = float(probs[in_a].sum()), float(probs[in_b].sum())
    return {"mode_a_mass": ma, "mode_b_mass": mb, "min_mode_mass": min(ma, mb),
            "off_mode_mass": float(probs[~(in_a | in_b)].sum())}


# -- the benchmark's functions -------------------------------------------------------------------------

_BASE = make_spec("didactic-bimodal-base", 70.0)  # its warm start (to π_ref) and its parameter checks


def _prompts(ctx: DataContext | EvalContext, p: BimodalParams) -> list[Prompt]:
    _BASE.data("prompts", DataContext(params=p, encoder=ctx.encoder, seed=ctx.seed))  # validates p
    peaks, heights, *_ = task(p)
    extra = {"peaks": list(peaks), "heights": list(heights)}
    return [Prompt(pr.ids, pr.text, {**pr.meta, **extra})
            for pr in state_prompts(ctx.encoder.tokenizer, p, peak=peaks[0], length=1)]


def _data(kind: str, ctx: DataContext) -> list[Any]:
    p: BimodalParams = ctx.params
    prompts = _prompts(ctx, p)
    if kind == "prompts":
        return prompts
    _, _, reward, ref, expert = task(p)
    off = p.action_offset
    if kind == "demonstrations":
        rng = np.random.default_rng([_STREAMS[kind], int(ctx.seed) % 2**63])
        draws = rng.choice(N_ACTIONS, size=(p.n_states, p.n_demos), p=expert)
        return [Sequence(pr, (int(off + a),)) for pr, row in zip(prompts, draws, strict=True) for a in row]
    if kind == "preferences":
        rng = np.random.default_rng([_STREAMS[kind], int(ctx.seed) % 2**63])
        pairs: list[Pair] = []
        for pr in prompts:
            kept, tries = 0, 0
            while kept < p.n_pairs and tries < 100 * max(p.n_pairs, 1):
                tries += 1
                a, b = rng.choice(N_ACTIONS, size=2, p=ref)
                if reward[a] == reward[b]:  # a tie says nothing: redraw
                    continue
                win, lose = (a, b) if reward[a] > reward[b] else (b, a)
                pairs.append(Pair(pr, (int(off + win),), (int(off + lose),)))
                kept += 1
        return pairs
    raise HarnessError(f"benchmark '{NAME}' provides demonstrations, preferences, prompts and reward, not '{kind}'")


def _reward(prompt: Prompt, completion: Completion) -> float:
    defaults = BimodalParams()
    meta = prompt.meta or {}
    peaks = tuple(meta.get("peaks", (defaults.peak_a, defaults.peak_b)))
    width = float(meta.get("width", defaults.width))
    heights = tuple(meta.get("heights") or balanced_heights(peaks, width, defaults.tau))
    action = int(token_actions(completion.ids, int(meta.get("action_offset", defaults.action_offset)), 1)[0])
    return float(bimodal_reward(peaks, heights, width)[action]) if action >= 0 else 0.0


def _warm_start(ctx: WarmStartContext) -> None:
    p: BimodalParams = ctx.params
    if p.ref_loc == CAUCHY_LOC:
        _BASE.warm_start(ctx)  # fits π_ref; the reward plays no part
    else:  # the control's other starting policy
        _didactic_warm_start(ctx, name=NAME, peak=70.0, length=1, ref=pi_ref_probs(loc=p.ref_loc))


def _evaluate(ctx: EvalContext) -> EvalResult:
    p: BimodalParams = ctx.params
    prompts = _prompts(ctx, p)
    prompts = prompts[: ctx.limit] if ctx.limit is not None else prompts
    peaks, _, reward, ref, expert = task(p)
    logprobs = ctx.lm.next_token_logprobs(prompts).double().numpy()
    rows, records = [], []
    for prompt, lp in zip(prompts, logprobs, strict=True):
        probs, mass = action_distribution(lp, p.action_offset)
        metrics = {**action_metrics(probs, reward, ref, expert), **mode_metrics(probs, peaks, p.width),
                   "action_mass": mass}
        rows.append(metrics)
        top = np.argsort(-probs, kind="stable")[:5]
        records.append({"item_id": f"state-{prompt.meta['state']}", "state": prompt.meta["state"], **metrics, "top_actions": [int(a) for a in top],
                        "top_probs": [float(probs[a]) for a in top]})
    means = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    return EvalResult(metrics=means, records=records)


BIMODAL_METRICS = (
    MetricSpec("forward_kl", lower_is_better=True, item="forward_kl"),
    MetricSpec("reverse_kl", lower_is_better=True, item="reverse_kl"),
    MetricSpec("expected_reward", item="expected_reward"),
    MetricSpec("*_mass", role="diagnostic", item="{metric}"),
    MetricSpec("off_mode_mass", lower_is_better=True, role="diagnostic", item="off_mode_mass"),
    MetricSpec("kl_ref", lower_is_better=True, role="diagnostic", item="kl_ref"),
    MetricSpec("entropy", role="diagnostic", item="entropy"),
)
"""Goals: the KLs to the bimodal expert (and the reward). Where the mass sits (per mode, off the modes) is
what the suite studies, not a score: mass-covering and mode-seeking are both answers, so they are
diagnostics."""


def make_bimodal_spec() -> BenchmarkSpec:
    return BenchmarkSpec(
        name=NAME,
        description="Didactic bandit with a BIMODAL expert: reward peaks at actions 30 and 70, expert "
        "p* ∝ pi_ref exp(R/tau) with equal mass on both modes; mass-covering vs mode-seeking",
        paper=PAPER,
        evaluate=_evaluate,
        params=BimodalParams,
        version="1",
        provides=frozenset({"demonstrations", "preferences", "prompts", "reward"}),
        data=_data,
        reward=_reward,
        warm_start=_warm_start,
        metrics=BIMODAL_METRICS,
    )


# -- the 9-token variant: modes of whole sequences ---------------------------------------------------------


@dataclass(frozen=True)
class BimodalMultiParams(DidacticMultiParams):
    """The 9-token bandit's parameters plus the two peaks."""

    peak_a: float = param(30.0, "action of the first mode's reward peak")
    peak_b: float = param(70.0, "action of the second mode's reward peak")


def mode_experts(p: BimodalMultiParams) -> tuple[tuple[float, float], np.ndarray, np.ndarray]:
    """``(peaks, p_a, p_b)``: each mode's per-token expert ``p_m ∝ π_ref exp(R_m / τ)`` (unimodal)."""
    peaks = (float(p.peak_a), float(p.peak_b))
    ref = pi_ref_probs()
    return peaks, expert_probs(reward_values(peaks[0], p.width), p.tau, ref), \
        expert_probs(reward_values(peaks[1], p.width), p.tau, ref)


def mixture_logprob(actions: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> np.ndarray:
    """``log p*(y)`` of the sequence-level mixture ``p* = ½ Π p_a(y_i) + ½ Π p_b(y_i)`` (last axis)."""
    la, lb = sequence_logprob(actions, p_a), sequence_logprob(actions, p_b)
    return np.logaddexp(la, lb) - math.log(2.0)


def topic_reward(actions: np.ndarray, peaks: tuple[float, float], width: float) -> np.ndarray:
    """``max_m mean_i R_m(y_i)``: high only for a sequence that stays near ONE peak (``-1`` scores 0)."""
    return np.maximum(sequence_reward(actions, reward_values(peaks[0], width)),
                      sequence_reward(actions, reward_values(peaks[1], width)))


def sequence_modes(actions: np.ndarray, peaks: tuple[float, float], width: float) -> dict[str, float]:
    """Fractions of sequences (rows) that touch only mode a, only mode b, both (mixed), or neither; a token
    touches a mode when it lies within ``width`` of its peak."""
    actions = np.asarray(actions)
    ok = actions >= 0
    in_a = (np.abs(actions - peaks[0]) <= width) & ok
    in_b = (np.abs(actions - peaks[1]) <= width) & ok
    has_a, has_b = in_a.any(-1), in_b.any(-1)
    only_a, only_b = float((has_a & ~has_b).mean()), float((has_b & ~has_a).mean())
    return {"mode_a_fraction": only_a, "mode_b_fraction": only_b, "min_mode_fraction": min(only_a, only_b),
            "mixed_fraction": float((has_a & has_b).mean()), "off_mode_fraction": float((~has_a & ~has_b).mean())}


_BASE_MULTI = make_spec("didactic-bimodal-multi-base", 70.0, multi=True)  # warm start (per position to π_ref)


def _multi_prompts(ctx: DataContext | EvalContext, p: BimodalMultiParams) -> list[Prompt]:
    _BASE_MULTI.data("prompts", DataContext(params=p, encoder=ctx.encoder, seed=ctx.seed))  # validates p
    extra = {"peaks": [float(p.peak_a), float(p.peak_b)], "tau": float(p.tau)}
    return [Prompt(pr.ids, pr.text, {**pr.meta, **extra})
            for pr in state_prompts(ctx.encoder.tokenizer, p, peak=float(p.peak_a), length=MULTI_LENGTH)]


def _expert_draws(rng: np.random.Generator, shape: tuple[int, ...], p_a: np.ndarray, p_b: np.ndarray) -> np.ndarray:
    """Sequences of the mixture: a mode per sequence, then its tokens iid from that mode."""
    modes = rng.random(shape) < 0.5
    a = rng.choice(N_ACTIONS, size=(*shape, MULTI_LENGTH), p=p_a)
    b = rng.choice(N_ACTIONS, size=(*shape, MULTI_LENGTH), p=p_b)
    return np.where(modes[..., None], a, b)


def _multi_data(kind: str, ctx: DataContext) -> list[Any]:
    p: BimodalMultiParams = ctx.params
    prompts = _multi_prompts(ctx, p)
    if kind == "prompts":
        return prompts
    peaks, p_a, p_b = mode_experts(p)
    off = p.action_offset
    rng = np.random.default_rng([_STREAMS.get(kind, 99), int(ctx.seed) % 2**63])
    if kind == "demonstrations":
        draws = _expert_draws(rng, (p.n_states, p.n_demos), p_a, p_b)
        return [Sequence(pr, tuple(int(off + a) for a in row)) for pr, rows in zip(prompts, draws, strict=True)
                for row in rows]
    if kind == "preferences":
        ref = pi_ref_probs()
        pairs: list[Pair] = []
        for pr in prompts:
            kept, tries = 0, 0
            while kept < p.n_pairs and tries < 100 * max(p.n_pairs, 1):
                tries += 1
                x = rng.choice(N_ACTIONS, size=(2, MULTI_LENGTH), p=ref)
                ra, rb = expert_log_ratio(x, p)
                if ra == rb:
                    continue
                win, lose = (x[0], x[1]) if ra > rb else (x[1], x[0])
                pairs.append(Pair(pr, tuple(int(off + a) for a in win), tuple(int(off + a) for a in lose)))
                kept += 1
        return pairs
    raise HarnessError(f"benchmark '{MULTI_NAME}' provides demonstrations, preferences, prompts and reward, "
                       f"not '{kind}'")


def expert_log_ratio(actions: np.ndarray, p: BimodalMultiParams) -> np.ndarray:
    """``τ (log p*(y) - log π_ref(y))``, the 9-token variant's reward (last axis): KL-regularised RL on it at
    beta = τ has p* as its optimum, i.e. it minimises KL(π‖p*) exactly (as R does in the one-token variant)."""
    _, p_a, p_b = mode_experts(p)
    return p.tau * (mixture_logprob(actions, p_a, p_b) - sequence_logprob(actions, pi_ref_probs()))


def _multi_reward(prompt: Prompt, completion: Completion) -> float:
    defaults = BimodalMultiParams()
    meta = prompt.meta or {}
    peaks = tuple(meta.get("peaks", (defaults.peak_a, defaults.peak_b)))
    p = BimodalMultiParams(peak_a=float(peaks[0]), peak_b=float(peaks[1]),
                           width=float(meta.get("width", defaults.width)), tau=float(meta.get("tau", defaults.tau)))
    actions = token_actions(completion.ids, int(meta.get("action_offset", defaults.action_offset)), MULTI_LENGTH)
    return float(expert_log_ratio(actions[None, :], p)[0])


def _multi_evaluate(ctx: EvalContext) -> EvalResult:
    p: BimodalMultiParams = ctx.params
    prompts = _multi_prompts(ctx, p)
    prompts = prompts[: ctx.limit] if ctx.limit is not None else prompts
    peaks, p_a, p_b = mode_experts(p)
    ref = pi_ref_probs()
    per_state = math.ceil(p.eval_samples / len(prompts))
    seed = int(np.random.default_rng([_STREAMS["eval_generate"], int(ctx.seed) % 2**63]).integers(2**31 - 1))
    outs = ctx.generate(prompts, n=per_state, temperature=1.0, max_new_tokens=MULTI_LENGTH, seed=seed)
    completions = [c for comps in outs for c in comps]
    actions = np.stack([token_actions(c.ids, p.action_offset, MULTI_LENGTH) for c in completions])
    log_pi = ctx.lm.logprobs([c.as_sequence() for c in completions]).double().numpy()
    rng = np.random.default_rng([_STREAMS["eval_expert"], int(ctx.seed) % 2**63])
    draws = _expert_draws(rng, (len(prompts), per_state), p_a, p_b)
    expert_seqs = [Sequence(pr, tuple(int(p.action_offset + a) for a in row))
                   for pr, rows in zip(prompts, draws, strict=True) for row in rows]
    log_pi_expert = ctx.lm.logprobs(expert_seqs).double().numpy()
    flat = draws.reshape(-1, MULTI_LENGTH)
    metrics = {
        "expected_reward": float(expert_log_ratio(actions, p).mean()),
        "topic_reward": float(topic_reward(actions, peaks, p.width).mean()),
        "action_mass": float((actions >= 0).all(-1).mean()),
        "kl_ref": float(np.mean(log_pi - sequence_logprob(actions, ref))),
        "reverse_kl": float(np.mean(log_pi - mixture_logprob(actions, p_a, p_b))),
        "forward_kl": float(np.mean(mixture_logprob(flat, p_a, p_b) - log_pi_expert)),
        "entropy": float(-log_pi.mean()),
        **sequence_modes(actions, peaks, p.width),
    }
    records = [{"item_id": f"state-{pr.meta['state']}", "state": pr.meta["state"],
                "samples": [[int(a) for a in row] for row in actions[i * per_state:(i + 1) * per_state][:3]]}
               for i, pr in enumerate(prompts)]
    return EvalResult(metrics=metrics, records=records)


def _multi_warm_start(ctx: WarmStartContext) -> None:
    _BASE_MULTI.warm_start(ctx)  # π_ref at every position, teacher-forced on π_ref prefixes


BIMODAL_MULTI_METRICS = (
    MetricSpec("forward_kl", lower_is_better=True),
    MetricSpec("reverse_kl", lower_is_better=True),
    MetricSpec("expected_reward"),
    MetricSpec("*_fraction", role="diagnostic"),
    MetricSpec("mixed_fraction", lower_is_better=True, role="diagnostic"),
    MetricSpec("off_mode_fraction", lower_is_better=True, role="diagnostic"),
    MetricSpec("topic_reward", role="diagnostic"),
    MetricSpec("action_mass", role="diagnostic"),
    MetricSpec("kl_ref", lower_is_better=True, role="diagnostic"),
    MetricSpec("entropy", role="diagnostic"),
)


def make_bimodal_multi_spec() -> BenchmarkSpec:
    return BenchmarkSpec(
        name=MULTI_NAME,
        description="9-token didactic bandit whose expert is a MIXTURE of two sequence modes (all tokens near "
        "action 30, or all near 70; 50/50): averaging the modes token by token gives mixed sequences",
        paper=PAPER,
        evaluate=_multi_evaluate,
        params=BimodalMultiParams,
        version="1",
        provides=frozenset({"demonstrations", "preferences", "prompts", "reward"}),
        data=_multi_data,
        reward=_multi_reward,
        warm_start=_multi_warm_start,
        metrics=BIMODAL_MULTI_METRICS,
    )


@hookimpl
def register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register didactic-bimodal and didactic-bimodal-multi."""
    register(make_bimodal_spec())
    register(make_bimodal_multi_spec())


__all__ = ["BimodalMultiParams", "BimodalParams", "balanced_heights", "bimodal_reward", "expert_log_ratio",
           "make_bimodal_multi_spec", "make_bimodal_spec", "mixture_logprob", "mode_experts", "mode_masks", "mode_metrics",
           "register_benchmarks", "sequence_modes", "task", "topic_reward"]
