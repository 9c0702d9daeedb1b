"""The didactic bandit of Tajwar et al. 2024 (arXiv 2404.14367), "Preference Fine-Tuning of LLMs Should
Leverage Suboptimal, On-Policy Data": the embedded default benchmark. It runs on any causal LM in seconds.

**The task.** A policy picks one of 100 actions (bins). ``π_ref`` is tanh(Cauchy(loc=-0.7, scale=0.4))
discretised into 100 bins on [-1, 1]. It has an interior mode at bins 14-18 (about 2.7% each) and heavy
edge bins (bin 0 about 7.8%, bin 99 about 4.2%). There are two rewards, ``R1(a) = exp(-((a-70)/w)^2)``
(the peak lies where π_ref has little mass, ``E_ref[R1] = 0.039``) and ``R2(a) = exp(-((a-20)/w)^2)`` (the
peak sits next to π_ref's mode, ``E_ref[R2] = 0.377``), with ``w = 10``. The paper's finding: on-policy
sampling and negative gradients matter for R1 and hardly for R2.

Registered benchmarks:

- ``didactic-r1`` / ``didactic-r2``: one generated token is the action.
- ``didactic-multi-r1`` / ``didactic-multi-r2``: 9 generated tokens. The paper's reference policy applies
  per position, and the reward is the mean of R over the 9 positions.

**How it maps onto an LLM** (the paper uses a small MLP or minGPT; it says nothing about LLM details).

- Action ``a`` is token id ``action_offset + a`` (default 0: ids 0..99 exist in every vocabulary of
  more than 100 tokens). State ``k`` is the prompt ``[bos, state_offset + k]`` (just the state token
  when the tokenizer has no BOS). The reward ignores the state, as in the paper, whose contexts are
  random 100-dim vectors. So ``n_states`` only gives several prompts. Data and evaluation use the same
  states.
- Responses carry **no EOS**: a response is exactly 1 (or 9) action tokens. A missing token, or a token
  that is not an action (EOS included), scores 0.
- ``reward(prompt, completion)`` reads ``width`` and ``action_offset`` from ``prompt.meta``, which this
  module's prompts carry, because the host calls it without params. Without meta it uses the defaults.

**Choices where the paper is silent or different.**

- *π_ref is exact.* The paper histograms 10,000 samples. We use the limit of that histogram:
  ``P(bin i) = F(atanh(e_{i+1})) - F(atanh(e_i))``, with F the Cauchy CDF, e_i the bin edges and
  ``atanh(±1) = ±inf``. This gives bin 0 = 7.81%, bin 99 = 4.22%, bins 14-18 = 2.63-2.68% each,
  ``E[R1] = 0.0390``, ``E[R2] = 0.3772``. These match the paper's Monte Carlo figures.
- *Demonstrations* (the paper has none) come from the expert ``p* ∝ π_ref · exp(R / τ)`` with τ = 0.1.
  This is the optimum of KL-regularised reward maximisation at β = τ, and gives ``E_{p*}[R1] = 0.941``,
  ``E_{p*}[R2] = 0.947``. There are ``n_demos`` per state. The multi variant draws each of its 9 tokens
  iid from p*.
- *Preferences*: ``n_pairs`` per state, each two iid samples from π_ref (the offline data of epoch 0 in
  the paper), ranked by the true reward as in the paper's DPO. A tie is redrawn.
  The paper's DPO instead uses all C(N, 2) pairs of N = 10 samples.
- *Warm start.* Like the paper, we fit the policy to π_ref by minimising KL(π_θ‖π_ref), with
  ``warm_steps = 100`` Adam steps at ``warm_lr = 0.01`` and all states in one batch. An LLM has a full
  vocabulary where π_ref is 0, so the loss is ``KL(π̃‖π_ref) - log m``. Here π̃ is the next-token
  distribution renormalised over the action tokens and m is the mass it puts on them. Both terms are
  >= 0, and both are 0 exactly when π equals π_ref over the whole vocabulary. The multi variant applies
  the loss at each of the 9 positions, teacher-forced on prefixes sampled from π_ref (``warm_prefixes``
  per state and step). The paper samples those prefixes from the policy itself. The target is the same
  at every position whatever the prefix, so π_ref prefixes are equivalent, and they need no sampling
  loop. The warm start is deterministic given the seed: prefixes come from numpy, and torch's RNG is
  forked and seeded locally.
- *Metrics.* Single-token metrics are **exact**, computed from the next-token distribution after each
  state prompt and averaged over states:
  - ``expected_reward``, ``kl_ref`` = KL(π‖π_ref), ``forward_kl`` = KL(p*‖π), ``reverse_kl`` =
    KL(π‖p*) and ``entropy``, all on the distribution renormalised over the 100 action tokens;
  - ``action_mass``, the probability on action tokens.

  The paper instead averages one sampled reward per eval state.
- *Records.* One per state, with its metrics, its top-5 actions and the full distribution over the 100
  actions (``action_probs``), next to ``pi_ref_probs`` and ``expert_probs`` (π_ref and p* for the
  benchmark's params), so a report can plot the final distribution (mean over states and seeds) against
  both. The multi-token variant's ``action_probs`` is the frequency of each action among the sampled
  tokens of that state (all 9 positions; non-action tokens left out).
- Multi-token metrics are Monte Carlo estimates from ``eval_samples`` samples, split evenly over the
  states, at temperature 1. Log π(y) is the policy's sequence log-prob. The reference for ``kl_ref`` is
  the exact product of π_ref over positions; the paper's code compares against the warm-started copy
  instead. A non-action token counts as probability 1e-12 under π_ref and p*. ``action_mass`` is the
  fraction of samples whose 9 tokens are all actions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

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

PAPER = "Tajwar et al. 2024, arXiv 2404.14367"
N_ACTIONS = 100
CAUCHY_LOC = -0.7
CAUCHY_SCALE = 0.4
MULTI_LENGTH = 9
NON_ACTION_PROB = 1e-12  # what π_ref and p* give a token that is not an action (log would be -inf)
PEAKS = {"r1": 70.0, "r2": 20.0}
# Independent random streams per use of the seed (so more pairs never change the demonstrations).
_STREAMS = {"demonstrations": 1, "preferences": 2, "warm_start": 3, "eval_expert": 4, "eval_generate": 5}


@dataclass(frozen=True)
class DidacticParams:
    """Parameters of the single-token didactic bandit (defaults: the paper's)."""

    n_states: int = param(10, "number of state prompts [bos, state_offset + k]; the reward ignores the state", ge=1)
    state_offset: int = param(
        100, "token id of state 0 (states use ids state_offset .. state_offset + n_states - 1)"
    )
    action_offset: int = param(
        0, "token id of action 0 (actions use ids action_offset .. action_offset + 99)"
    )
    width: float = param(
        10.0, "reward width w in exp(-((a - peak) / w)^2); the paper's wider variants use 20, 30; "
        "0 = exact match (1 for the peak action only)", ge=0
    )
    tau: float = param(0.1, "temperature of the expert p* ∝ pi_ref * exp(R / tau) that gives demonstrations", gt=0)
    n_demos: int = param(10, "demonstrations per state, sampled from the expert p*", ge=0)
    n_pairs: int = param(10, "preference pairs per state: two pi_ref samples ranked by the true reward", ge=0)
    warm_steps: int = param(100, "Adam steps fitting the policy to pi_ref before training (0: no warm start)", ge=0)
    warm_lr: float = param(0.01, "learning rate of the warm start")


@dataclass(frozen=True)
class DidacticMultiParams(DidacticParams):
    """Parameters of the 9-token variant: the single-token ones plus Monte Carlo and warm-start sizes."""

    eval_samples: int = param(256, "Monte Carlo samples for the metrics (split evenly over the states)", ge=1)
    warm_prefixes: int = param(8, "pi_ref-sampled prefixes per state in each warm-start step", ge=1)


# -- pure helpers (numpy) ----------------------------------------------------------------------------------


def pi_ref_probs(
    n_actions: int = N_ACTIONS, loc: float = CAUCHY_LOC, scale: float = CAUCHY_SCALE
) -> np.ndarray:
    """The exact bin probabilities of tanh(Cauchy(loc, scale)) over ``n_actions`` bins on [-1, 1]."""
    edges = np.linspace(-1.0, 1.0, n_actions + 1)
    with np.errstate(divide="ignore"):
        x = np.arctanh(edges)  # -inf and +inf at the two ends
    cdf = 0.5 + np.arctan((x - loc) / scale) / np.pi
    probs = np.diff(cdf)
    return probs / probs.sum()


def reward_values(peak: float, width: float = 10.0, n_actions: int = N_ACTIONS) -> np.ndarray:
    """``R(a) = exp(-((a - peak) / width)^2)`` for every action ``a``; ``width = 0`` is its limit, the
    exact-match reward ``R(a) = 1`` if ``a == peak`` else 0 (a verifiable 0/1 reward)."""
    a = np.arange(n_actions, dtype=np.float64)
    if width == 0:
        return (a == round(peak)).astype(np.float64)
    return np.exp(-(((a - peak) / width) ** 2))


def expert_probs(reward: np.ndarray, tau: float, ref: np.ndarray | None = None) -> np.ndarray:
    """The expert ``p* ∝ ref · exp(reward / tau)`` (``ref`` defaults to π_ref)."""
    ref = pi_ref_probs(len(reward)) if ref is None else np.asarray(ref, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logits = np.log(ref) + np.asarray(reward, dtype=np.float64) / tau
    logits = logits - logits.max()
    probs = np.exp(logits)
    return probs / probs.sum()


def expected_reward(probs: np.ndarray, reward: np.ndarray) -> float:
    """``E_{a~probs}[reward(a)]``."""
    return float(np.dot(probs, reward))


def expected_reward_ref(peak: float, width: float = 10.0) -> float:
    """``E_{π_ref}[R]`` for the reward peaked at ``peak`` (R1: 0.0390, R2: 0.3772)."""
    return expected_reward(pi_ref_probs(), reward_values(peak, width))


def expected_reward_expert(peak: float, width: float = 10.0, tau: float = 0.1) -> float:
    """``E_{p*}[R]`` under the expert (τ = 0.1: R1 0.941, R2 0.947)."""
    reward = reward_values(peak, width)
    return expected_reward(expert_probs(reward, tau), reward)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(p‖q) = Σ p log(p/q)`` with ``0 log 0 = 0`` (``inf`` where q = 0 < p)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    support = p > 0
    if np.any(q[support] <= 0):
        return math.inf
    return float(np.sum(p[support] * (np.log(p[support]) - np.log(q[support]))))


def entropy(p: np.ndarray) -> float:
    """``H(p) = -Σ p log p`` in nats."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def action_distribution(
    logprobs: np.ndarray, action_offset: int = 0, n_actions: int = N_ACTIONS
) -> tuple[np.ndarray, float]:
    """From next-token log-probs over the vocabulary ``[V]``: the action distribution renormalised over
    the action tokens, and the probability mass on them."""
    la = np.asarray(logprobs, dtype=np.float64)[action_offset : action_offset + n_actions]
    top = la.max()
    log_mass = top + math.log(float(np.exp(la - top).sum()))
    return np.exp(la - log_mass), math.exp(log_mass)


def action_metrics(
    probs: np.ndarray, reward: np.ndarray, ref: np.ndarray, expert: np.ndarray
) -> dict[str, float]:
    """Exact metrics of an action distribution: reward, KL to π_ref, both KLs to the expert, entropy."""
    return {
        "expected_reward": expected_reward(probs, reward),
        "kl_ref": kl_divergence(probs, ref),
        "forward_kl": kl_divergence(expert, probs),
        "reverse_kl": kl_divergence(probs, expert),
        "entropy": entropy(probs),
    }


def token_actions(
    ids: Seq[int], action_offset: int = 0, length: int = 1, n_actions: int = N_ACTIONS
) -> np.ndarray:
    """The actions of the first ``length`` tokens of ``ids`` (``-1`` for a non-action or missing token)."""
    out = np.full(length, -1, dtype=np.int64)
    for i, tok in enumerate(list(ids)[:length]):
        a = int(tok) - action_offset
        if 0 <= a < n_actions:
            out[i] = a
    return out


def sequence_reward(actions: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Mean reward over positions (last axis) of action arrays; ``-1`` (not an action) scores 0."""
    actions = np.asarray(actions)
    values = np.where(actions >= 0, reward[np.clip(actions, 0, None)], 0.0)
    return values.mean(-1)


def sequence_logprob(actions: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``Σ_i log probs[a_i]`` over the last axis; a non-action (``-1``) or zero-probability action counts
    as probability ``NON_ACTION_PROB``."""
    actions = np.asarray(actions)
    logp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), NON_ACTION_PROB))
    values = np.where(actions >= 0, logp[np.clip(actions, 0, None)], math.log(NON_ACTION_PROB))
    return values.sum(-1)


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([_STREAMS[stream], int(seed) % 2**63])


# -- prompts and checks --------------------------------------------------------------------------------


def _check(name: str, tokenizer: Any, p: DidacticParams) -> None:
    """Refuse token ranges that can't work with this tokenizer, naming the parameter to change (each value's own
    range is declared on the params and checked where it is given)."""
    where = f"benchmark '{name}'"
    vocab = len(tokenizer)
    actions = range(p.action_offset, p.action_offset + N_ACTIONS)
    states = range(p.state_offset, p.state_offset + p.n_states)
    for label, ids in (("action", actions), ("state", states)):
        if ids.start < 0 or ids.stop > vocab:
            raise HarnessError(
                f"{where}: {label} tokens {ids.start}..{ids.stop - 1} don't fit a vocabulary of {vocab}; "
                f"change {label}_offset"
            )
    if set(actions) & set(states):
        raise HarnessError(f"{where}: action and state tokens overlap; change action_offset or state_offset")
    for special in ("bos_token_id", "eos_token_id", "pad_token_id"):
        tok = getattr(tokenizer, special, None)
        if tok is not None and (tok in actions or tok in states):
            raise HarnessError(
                f"{where}: the tokenizer's {special.removesuffix('_id')} ({tok}) is an action or state token; "
                f"move action_offset / state_offset to ordinary tokens"
            )


def state_prompts(tokenizer: Any, p: DidacticParams, *, peak: float, length: int) -> list[Prompt]:
    """``[bos, state_offset + k]`` for each state ``k`` (no BOS if the tokenizer has none).

    ``meta`` carries what ``reward()`` needs: state, peak, width, action offset, response length.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    head = () if bos is None else (int(bos),)
    meta = {"peak": peak, "width": p.width, "action_offset": p.action_offset, "length": length}
    return [
        Prompt(ids=(*head, p.state_offset + k), text=f"state {k}", meta={"state": k, **meta})
        for k in range(p.n_states)
    ]


# -- the benchmark's functions (bound per registered name with functools.partial) ------------------


def _data(kind: str, ctx: DataContext, *, name: str, peak: float, length: int) -> list[Any]:
    p = ctx.params
    tokenizer = ctx.encoder.tokenizer
    _check(name, tokenizer, p)
    prompts = state_prompts(tokenizer, p, peak=peak, length=length)
    if kind == "prompts":
        return prompts
    reward = reward_values(peak, p.width)
    ref = pi_ref_probs()
    off = p.action_offset
    if kind == "demonstrations":
        expert = expert_probs(reward, p.tau, ref)
        draws = _rng(ctx.seed, kind).choice(N_ACTIONS, size=(p.n_states, p.n_demos, length), p=expert)
        return [
            Sequence(prompt, tuple(int(off + a) for a in row))
            for prompt, rows in zip(prompts, draws, strict=True)
            for row in rows
        ]
    if kind == "preferences":
        rng = _rng(ctx.seed, kind)
        pairs: list[Pair] = []
        for prompt in prompts:
            kept, tries = 0, 0
            while kept < p.n_pairs and tries < 100 * max(p.n_pairs, 1):
                tries += 1
                a, b = rng.choice(N_ACTIONS, size=(2, length), p=ref)
                ra, rb = sequence_reward(a, reward), sequence_reward(b, reward)
                if ra == rb:  # a tie says nothing: redraw
                    continue
                win, lose = (a, b) if ra > rb else (b, a)
                pairs.append(
                    Pair(prompt, tuple(int(off + x) for x in win), tuple(int(off + x) for x in lose))
                )
                kept += 1
        return pairs
    raise HarnessError(
        f"benchmark '{name}' provides demonstrations, preferences, prompts and reward, not '{kind}'"
    )


def _reward(prompt: Prompt, completion: Completion, *, peak: float, length: int) -> float:
    defaults = DidacticParams()
    meta = prompt.meta or {}
    width = float(meta.get("width", defaults.width))
    offset = int(meta.get("action_offset", defaults.action_offset))
    actions = token_actions(completion.ids, offset, length)
    return float(sequence_reward(actions, reward_values(float(meta.get("peak", peak)), width)))


def warm_start_loss(logprobs: torch.Tensor, log_ref: torch.Tensor, action_offset: int = 0) -> torch.Tensor:
    """Mean of ``KL(π̃‖π_ref) - log m`` over rows of next-token log-probs ``[..., V]``.

    π̃ is the distribution renormalised over the action tokens, and m the mass on them. The loss is 0
    exactly when π equals π_ref over the whole vocabulary.
    """
    la = logprobs[..., action_offset : action_offset + log_ref.shape[-1]]
    log_mass = la.logsumexp(-1, keepdim=True)
    renorm = la - log_mass
    reverse_kl = (renorm.exp() * (renorm - log_ref)).sum(-1)
    return (reverse_kl - log_mass.squeeze(-1)).mean()


def _warm_start(ctx: WarmStartContext, *, name: str, peak: float, length: int, ref: np.ndarray | None = None) -> None:
    p = ctx.params
    model = ctx.lm.model
    _check(name, ctx.lm.tokenizer, p)
    if p.warm_steps == 0:
        return
    device = next(model.parameters()).device
    prompts = state_prompts(ctx.lm.tokenizer, p, peak=peak, length=length)
    base = torch.tensor([pr.ids for pr in prompts], dtype=torch.long)  # every prompt has the same length
    ref = pi_ref_probs() if ref is None else ref  # another starting policy: didactic_modes' symmetric control
    log_ref = torch.tensor(np.log(ref), dtype=torch.float32, device=device)
    rng = _rng(ctx.seed, "warm_start")
    width = getattr(p, "warm_prefixes", 1) if length > 1 else 1
    base = base.repeat_interleave(width, dim=0)
    optimizer = torch.optim.Adam([w for w in model.parameters() if w.requires_grad], lr=p.warm_lr)
    was_training = model.training
    cuda = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda):  # dropout, if any, is seeded here and the global RNG untouched
        torch.manual_seed(ctx.seed)
        model.train()
        try:
            for step in range(p.warm_steps):
                ids = base
                if length > 1:  # teacher-forced prefixes a_1..a_{L-1} from π_ref
                    prefix = rng.choice(N_ACTIONS, size=(len(base), length - 1), p=ref) + p.action_offset
                    ids = torch.cat([base, torch.from_numpy(prefix)], dim=1)
                logits = model(input_ids=ids.to(device), use_cache=False).logits[:, base.shape[1] - 1 :, :]
                loss = warm_start_loss(torch.log_softmax(logits.float(), -1), log_ref, p.action_offset)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if (step + 1) % 25 == 0 or step + 1 == p.warm_steps:
                    ctx.progress(f"{name} warm start: step {step + 1}/{p.warm_steps}, loss {loss.item():.4f}")
        finally:
            optimizer.zero_grad(set_to_none=True)
            model.train(was_training)


def _limit(prompts: list[Prompt], limit: int | None) -> list[Prompt]:
    return prompts[:limit] if limit is not None else prompts


def _probs_list(probs: np.ndarray) -> list[float]:
    """A distribution for a record: 6 significant digits are plenty for a plot and keep records small."""
    return [float(f"{x:.6g}") for x in np.asarray(probs, dtype=np.float64)]


def _distributions(ref: np.ndarray, expert: np.ndarray) -> dict[str, list[float]]:
    return {"pi_ref_probs": _probs_list(ref), "expert_probs": _probs_list(expert)}


def _evaluate_single(ctx: EvalContext, *, name: str, peak: float) -> EvalResult:
    p = ctx.params
    _check(name, ctx.lm.tokenizer, p)
    prompts = _limit(state_prompts(ctx.lm.tokenizer, p, peak=peak, length=1), ctx.limit)
    reward = reward_values(peak, p.width)
    ref = pi_ref_probs()
    expert = expert_probs(reward, p.tau, ref)
    logprobs = ctx.lm.next_token_logprobs(prompts).double().numpy()
    rows, records = [], []
    references = _distributions(ref, expert)
    for prompt, lp in zip(prompts, logprobs, strict=True):
        probs, mass = action_distribution(lp, p.action_offset)
        metrics = {**action_metrics(probs, reward, ref, expert), "action_mass": mass}
        rows.append(metrics)
        top = np.argsort(-probs, kind="stable")[:5]
        records.append(
            {
                "item_id": f"state-{prompt.meta['state']}",
                "state": prompt.meta["state"],
                **metrics,
                "top_actions": [int(a) for a in top],
                "top_probs": [float(probs[a]) for a in top],  # renormalised over the action tokens
                "action_probs": _probs_list(probs),  # the whole distribution over the 100 actions
                **references,
            }
        )
    means = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    return EvalResult(metrics=means, records=records)


def _evaluate_multi(ctx: EvalContext, *, name: str, peak: float) -> EvalResult:
    p = ctx.params
    length = MULTI_LENGTH
    _check(name, ctx.lm.tokenizer, p)
    prompts = _limit(state_prompts(ctx.lm.tokenizer, p, peak=peak, length=length), ctx.limit)
    reward = reward_values(peak, p.width)
    ref = pi_ref_probs()
    expert = expert_probs(reward, p.tau, ref)
    per_state = math.ceil(p.eval_samples / len(prompts))
    seed = int(_rng(ctx.seed, "eval_generate").integers(2**31 - 1))
    outs = ctx.generate(prompts, n=per_state, temperature=1.0, max_new_tokens=length, seed=seed,
                        desc=f"benchmark '{name}' samples from the policy")
    completions = [c for comps in outs for c in comps]
    actions = np.stack([token_actions(c.ids, p.action_offset, length) for c in completions])
    log_pi = ctx.lm.logprobs([c.as_sequence() for c in completions]).double().numpy()
    rewards = sequence_reward(actions, reward)
    all_actions = (actions >= 0).all(-1)
    # Forward KL needs samples from the expert: E_{y~p*}[log p*(y) - log π(y)].
    draws = _rng(ctx.seed, "eval_expert").choice(N_ACTIONS, size=(len(prompts), per_state, length), p=expert)
    expert_seqs = [
        Sequence(prompt, tuple(int(p.action_offset + a) for a in row))
        for prompt, rows in zip(prompts, draws, strict=True)
        for row in rows
    ]
    log_pi_expert = ctx.lm.logprobs(expert_seqs).double().numpy()
    metrics = {
        "expected_reward": float(rewards.mean()),
        "action_mass": float(all_actions.mean()),
        "kl_ref": float(np.mean(log_pi - sequence_logprob(actions, ref))),
        "reverse_kl": float(np.mean(log_pi - sequence_logprob(actions, expert))),
        "forward_kl": float(np.mean(sequence_logprob(draws.reshape(-1, length), expert) - log_pi_expert)),
        "entropy": float(-log_pi.mean()),
    }
    records = []
    references = _distributions(ref, expert)
    for i, prompt in enumerate(prompts):
        sl = slice(i * per_state, (i + 1) * per_state)
        sampled = actions[sl].reshape(-1)
        counts = np.bincount(sampled[sampled >= 0], minlength=N_ACTIONS).astype(np.float64)
        records.append(
            {
                "item_id": f"state-{prompt.meta['state']}",
                "state": prompt.meta["state"],
                "expected_reward": float(rewards[sl].mean()),
                "action_mass": float(all_actions[sl].mean()),
                "samples": [[int(a) for a in row] for row in actions[sl][:3]],  # -1: not an action
                # how often each action was sampled (all positions), over the sampled action tokens
                "action_probs": _probs_list(counts / max(1.0, counts.sum())),
                **references,
            }
        )
    return EvalResult(metrics=metrics, records=records)


SINGLE_METRICS = (
    MetricSpec("expected_reward", item="expected_reward"),
    MetricSpec("forward_kl", lower_is_better=True, item="forward_kl"),
    MetricSpec("reverse_kl", lower_is_better=True, item="reverse_kl"),
    MetricSpec("kl_ref", lower_is_better=True, role="diagnostic", item="kl_ref"),
    MetricSpec("entropy", role="diagnostic", item="entropy"),
    MetricSpec("action_mass", role="diagnostic", item="action_mass"),
)
"""The one-token bandit's metrics: the reward and the KLs to the expert are goals; ``kl_ref`` (distance
from pi_ref), ``entropy`` and ``action_mass`` describe the policy and are diagnostics. Each record (one
state) holds every metric of its state."""

MULTI_METRICS = (
    MetricSpec("expected_reward", item="expected_reward"),
    MetricSpec("forward_kl", lower_is_better=True),
    MetricSpec("reverse_kl", lower_is_better=True),
    MetricSpec("kl_ref", lower_is_better=True, role="diagnostic"),
    MetricSpec("entropy", role="diagnostic"),
    MetricSpec("action_mass", role="diagnostic", item="action_mass"),
)
"""The 9-token bandit's metrics; its records (one per state) hold only the reward and the action mass."""


def make_spec(name: str, peak: float, multi: bool = False) -> BenchmarkSpec:
    """The spec of a didactic bandit whose reward peaks at action ``peak`` (1 or 9 generated tokens)."""
    length = MULTI_LENGTH if multi else 1
    shape = (
        f"{length} generated tokens, mean reward over them" if multi else "one generated token is the action"
    )
    evaluate = _evaluate_multi if multi else _evaluate_single
    return BenchmarkSpec(
        name=name,
        description=f"Didactic bandit: 100 action tokens, pi_ref = discretised tanh-Cauchy, "
        f"reward exp(-((a-{peak:g})/w)^2); {shape}",
        paper=PAPER,
        evaluate=functools.partial(evaluate, name=name, peak=peak),
        params=DidacticMultiParams if multi else DidacticParams,
        version="1",
        provides=frozenset({"demonstrations", "preferences", "prompts", "reward"}),
        data=functools.partial(_data, name=name, peak=peak, length=length),
        reward=functools.partial(_reward, peak=peak, length=length),
        warm_start=functools.partial(_warm_start, name=name, peak=peak, length=length),
        metrics=MULTI_METRICS if multi else SINGLE_METRICS,
    )


@hookimpl
def register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register didactic-r1, didactic-r2, didactic-multi-r1 and didactic-multi-r2."""
    for key, peak in PEAKS.items():
        register(make_spec(f"didactic-{key}", peak))
        register(make_spec(f"didactic-multi-{key}", peak, multi=True))


__all__ = [
    "DidacticMultiParams",
    "DidacticParams",
    "action_distribution",
    "action_metrics",
    "entropy",
    "expected_reward",
    "expected_reward_expert",
    "expected_reward_ref",
    "MULTI_METRICS",
    "SINGLE_METRICS",
    "expert_probs",
    "kl_divergence",
    "make_spec",
    "pi_ref_probs",
    "register_benchmarks",
    "reward_values",
    "sequence_logprob",
    "sequence_reward",
    "state_prompts",
    "token_actions",
    "warm_start_loss",
]
