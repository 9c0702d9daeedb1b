"""Policy-gradient primitives, written once and shared by every reward-optimising method.

Pure tensor functions (``[B, T]`` per-token tensors come with a ``[B, T]`` float mask, 1 = response
token; ``[B]`` tensors are per sequence):

- :func:`whiten` (masked), :class:`RunningMoments` (running mean/std over all values seen);
- baselines and returns: :func:`leave_one_out_baseline`, :func:`discounted_returns`, :func:`gae`;
- Schulman's KL estimators :func:`kl_k1`, :func:`kl_k2`, :func:`kl_k3` (samples from pi, ratio to ref);
- PPO pieces: :func:`clipped_surrogate`, :func:`clipped_value_loss`, :class:`AdaptiveKLController`;
- :func:`reinforce_loss`, :func:`entropy_from_logits`.

Plumbing for samplers (the trainer's rows carry scalars only, ``Row.values: dict[str, float]``):

- :func:`token_values` / :func:`stack_token_values` pack a per-token vector into row values named
  ``"{name}@{t}"`` and unpack them in the objective as a ``[B, T]`` tensor (zero past a row's length);
- :class:`OnPolicyParams`: the parameter block every on-policy method shares (where the reward comes from,
  then :class:`RolloutParams`: ``n`` samples per prompt, ``limit`` prompts, ``temperature``,
  ``max_new_tokens``); a method's params extend it;
- :func:`on_policy_spec`: the :class:`~harness.core.registry.MethodSpec` of an on-policy method (its family, data,
  reward hook and trainer settings);
- :func:`rollouts` samples ``n`` completions per prompt from the current policy and scores them with
  the method's reward (:func:`harness.training.rewards.current_reward`), keeping dense rewards as lists;
- :func:`token_logprobs` gives per-token log-probs (and hidden states) of sequences under an
  :class:`~harness.models.lm.LM` without gradients (pi_old for PPO, the reference for KL penalties).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from harness.core.data import PROMPTS, REWARD, Completion, Prompt, Sequence
from harness.core.params import param
from harness.core.registry import MethodHooks, MethodSpec
from harness.models.logprobs import masked_sum, sequence_logprobs
from harness.training import samplers
from harness.training.rewards import Reward, RewardFn, RewardParams, current_reward, prepare_reward, score_all

if TYPE_CHECKING:
    from harness.core.context import RoundContext
    from harness.models.lm import LM

DEFAULT_LENGTH = 64  # generated tokens when neither the method nor the benchmark's data says otherwise
ON_POLICY_TRAIN_DEFAULTS = {"optimizer": "adam", "schedule": "constant", "warmup_ratio": 0.0,
                            "rounds": 10, "steps": 15, "batch_size": 100, "lr": 1e-3}
"""Trainer settings of the on-policy methods: Adam at a constant learning rate (the bandit code's), and the budget
they compare at (10 rounds x 15 steps of 100 rows at lr 1e-3)."""


# -- normalisation -----------------------------------------------------------------------------------


def whiten(values: torch.Tensor, mask: torch.Tensor | None = None, *, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over all (masked) entries; ``shift_mean=False`` keeps the mean.

    The std is the population std (ddof 0). Masked-out entries come back as 0.
    """
    m = torch.ones_like(values) if mask is None else mask.to(values.dtype)
    count = m.sum().clamp(min=1)
    mean = (values * m).sum() / count
    var = (((values - mean) * m) ** 2).sum() / count
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m


@dataclass
class RunningMoments:
    """Running mean and std of every value seen so far (Chan et al.'s parallel update; plain floats, so
    it pickles into checkpoints). ``std`` is the sample std (ddof 1), 1.0 until two values are seen."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, values: Seq[float]) -> None:
        xs = [float(v) for v in values]
        if not xs:
            return
        n = len(xs)
        batch_mean = sum(xs) / n
        batch_m2 = sum((x - batch_mean) ** 2 for x in xs)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 1.0


# -- baselines and returns ---------------------------------------------------------------------------


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO baseline: for each of the ``n`` samples on the last axis, the mean reward of the OTHER n-1."""
    n = rewards.shape[-1]
    if n < 2:
        raise ValueError("a leave-one-out baseline needs at least 2 samples per prompt")
    return (rewards.sum(-1, keepdim=True) - rewards) / (n - 1)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor | None = None, gamma: float = 1.0) -> torch.Tensor:
    """Reward-to-go ``G_t = sum_{k >= t} gamma^(k-t) r_k`` along the last axis (masked tokens add 0)."""
    r = rewards if mask is None else rewards * mask
    out = torch.zeros_like(r)
    running = torch.zeros_like(r[..., 0])
    for t in reversed(range(r.shape[-1])):
        running = r[..., t] + gamma * running
        out[..., t] = running
    return out if mask is None else out * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None = None, *, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded ``[B, T]`` rows.

    ``delta_t = r_t + gamma V_{t+1} - V_t`` with ``V = 0`` after a row's last token;
    ``A_t = sum_k (gamma lam)^k delta_{t+k}``. Returns ``(advantages, returns = advantages + values)``,
    both zero where masked. No gradient flows (values are a fixed target).
    """
    rewards, values = rewards.detach(), values.detach()
    m = torch.ones_like(rewards) if mask is None else mask.to(rewards.dtype)
    T = rewards.shape[-1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(T)):
        nxt_m = m[..., t + 1] if t + 1 < T else torch.zeros_like(last)
        nxt_v = values[..., t + 1] * nxt_m if t + 1 < T else torch.zeros_like(last)
        delta = rewards[..., t] + gamma * nxt_v - values[..., t]
        last = delta + gamma * lam * nxt_m * last
        adv[..., t] = last
    adv = adv * m
    return adv, (adv + values) * m


# -- KL estimators (Schulman, "Approximating KL divergence", 2020) -------------------------------------
# Samples come from pi; log r = log pi_ref(a) - log pi(a). Each estimates KL(pi || pi_ref) per token.


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``k1 = -log r = log pi - log pi_ref``: unbiased, high variance, can be negative."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``k2 = (log r)^2 / 2``: biased, low variance, always >= 0."""
    return 0.5 * (ref_logp - logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``k3 = (r - 1) - log r``: unbiased, low variance, always >= 0."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


# -- PPO pieces ----------------------------------------------------------------------------------------


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip: float = 0.2
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective as a loss, per element: ``max(-A rho, -A clip(rho, 1-eps, 1+eps))``.

    ``rho = exp(logp - old_logp)``. Returns ``(loss, clipped)`` where ``clipped`` is 1.0 where the clipped
    branch is active (its gradient is exactly 0 there).
    """
    ratio = torch.exp(logp - old_logp.detach())
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    return torch.maximum(unclipped, clipped), (clipped > unclipped).float().detach()


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped value loss per element: ``0.5 max((V - R)^2, (V_old + clip(V - V_old, ±c) - R)^2)``."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)


@dataclass
class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. 2019: after a batch whose KL(pi || pi_ref) was
    ``current``, ``value *= 1 + clip(current / target - 1, -0.2, 0.2) * n_steps / horizon``.
    ``target=None`` keeps the coefficient fixed."""

    value: float = 0.2
    target: float | None = 6.0
    horizon: int = 10_000

    def update(self, current: float, n_steps: int) -> float:
        if self.target is not None:
            error = min(max(current / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy ``H = logsumexp(z) - sum softmax(z) z`` of the categorical over the last axis."""
    logits = logits.float()
    return torch.logsumexp(logits, -1) - (torch.softmax(logits, -1) * logits).sum(-1)


def reinforce_loss(token_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row score-function loss ``-sum_t A_t log pi(a_t | s_t)`` (advantages are constants)."""
    return -masked_sum(advantages.detach() * token_logps, mask)


# -- per-token values through rows ---------------------------------------------------------------------


def token_values(name: str, values: Seq[float], width: int) -> dict[str, float]:
    """Row values ``{"name@0": v_0, ..., "name@{width-1}": 0.0}``: a per-token vector, zero-padded."""
    if len(values) > width:
        raise ValueError(f"{name}: {len(values)} values do not fit width {width}")
    padded = [float(v) for v in values] + [0.0] * (width - len(values))
    return {f"{name}@{t}": v for t, v in enumerate(padded)}


def pad_rows(rows: Seq[torch.Tensor], width: int) -> torch.Tensor:
    """Per-token rows of different lengths as one ``[B, width]`` tensor, zero-padded on the right."""
    out = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def stack_token_values(values: Mapping[str, torch.Tensor], name: str, width: int) -> torch.Tensor:
    """The ``[B, width]`` tensor of the row values packed by :func:`token_values`."""
    return torch.stack([values[f"{name}@{t}"] for t in range(width)], dim=-1)


# -- sampling ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """One sampled completion: its prompt's ``group`` index, its ``index`` in the group, its reward."""

    completion: Completion
    group: int
    index: int
    reward: Reward

    @property
    def sequence(self) -> Sequence:
        return self.completion.as_sequence()


@dataclass(frozen=True)
class RolloutParams:
    """How each round samples the current policy: ``n`` samples per prompt of ``limit`` prompts, at ``temperature``,
    ``max_new_tokens`` long. The sampling half of :class:`OnPolicyParams`, alone for a method whose reward is its
    own (a discriminator, a fitted reward model) rather than a :class:`RewardParams` source."""

    n: int = param(4, "samples per prompt per round", ge=1)
    limit: int | None = param(None, "prompts per round, a fresh random subset each round (None = all)", ge=1)
    temperature: float = param(1.0, "sampling temperature", ge=0)
    max_new_tokens: int | None = param(None, "generated length (None: the longest benchmark response)", ge=1)

    def sampling(self) -> dict[str, int | float | None]:
        """The four settings as keywords: ``rollouts(ctx, **p.sampling())``, or an inner method's params."""
        return {"n": self.n, "limit": self.limit, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens}

    def generation(self, ctx: RoundContext) -> dict[str, float | int]:
        """The decoding settings of a round: ``temperature`` and ``max_new_tokens`` (:func:`response_length`)."""
        return {"temperature": self.temperature, "max_new_tokens": response_length(ctx, self.max_new_tokens)}


@dataclass(frozen=True)
class OnPolicyParams(RolloutParams, RewardParams):
    """The parameters every on-policy method shares: the reward's source (:class:`RewardParams`), then how each
    round samples the current policy (:class:`RolloutParams`). A method's params extend it; one that restates a
    field (``n`` with its own default and help) keeps the field in its place."""


def on_policy_spec(name: str, description: str, *, paper: str, sampler: Callable[..., Any],
                   objective: Callable[..., Any], params: type, reference: str = "initial",
                   train: Mapping[str, Any] | None = None, **more: Any) -> MethodSpec:
    """The :class:`MethodSpec` of an on-policy method: family ``on-policy``, needs prompts and a reward, builds the
    reward of ``params.reward_source`` before the first round (``on_round_start``:
    :func:`~harness.training.rewards.prepare_reward`), trains with :data:`ON_POLICY_TRAIN_DEFAULTS` updated by
    ``train``. ``more``: any other field (``real_train_defaults``, ``real_params``, ``needs_hidden``, ``modules``)."""
    return MethodSpec(name=name, family="on-policy", description=description, paper=paper, sampler=sampler,
                      objective=objective, params=params, needs=frozenset({PROMPTS, REWARD}), reference=reference,
                      hooks=MethodHooks(on_round_start=prepare_reward),
                      train_defaults={**ON_POLICY_TRAIN_DEFAULTS, **(train or {})}, **more)


def response_length(ctx: RoundContext, max_new_tokens: int | None) -> int:
    """``max_new_tokens`` if given; else the longest response of the benchmark's demonstrations or
    preference pairs (1 or 9 on the didactic bandit); else :data:`DEFAULT_LENGTH`."""
    if max_new_tokens is not None:
        return int(max_new_tokens)
    provides = ctx.data.provides
    if "demonstrations" in provides:
        return max(len(s.response) for s in ctx.data.demonstrations())
    if "preferences" in provides:
        return max(max(len(p.chosen), len(p.rejected)) for p in ctx.data.preferences())
    return DEFAULT_LENGTH


def round_prompts(ctx: RoundContext, limit: int | None) -> list[Prompt]:
    """The benchmark's prompts, or a fresh seeded subset of ``limit`` of them each round."""
    prompts = list(ctx.data.prompts())
    return prompts if limit is None or limit >= len(prompts) else ctx.rng.sample(prompts, limit)


def rollouts(ctx: RoundContext, *, n: int, limit: int | None = None, temperature: float = 1.0,
             max_new_tokens: int | None = None, reward: RewardFn | None = None) -> list[Rollout]:
    """``n`` samples per prompt from the CURRENT policy, scored by ``reward`` (default: the method's,
    :func:`~harness.training.rewards.current_reward`). Seeded by (seed, round) like :mod:`harness.training.samplers`."""
    prompts = round_prompts(ctx, limit)
    generation = {"temperature": temperature, "max_new_tokens": response_length(ctx, max_new_tokens)}
    outs = samplers.generate(ctx, "policy", prompts, n, generation)
    flat = [(g, i, c) for g, cs in enumerate(outs) for i, c in enumerate(cs)]
    rewards = score_all(reward or current_reward(ctx), [c.prompt for _, _, c in flat], [c for _, _, c in flat])
    return [Rollout(c, g, i, r) for (g, i, c), r in zip(flat, rewards, strict=True)]


def token_logprobs(lm: LM, seqs: Seq[Sequence], *, batch_size: int = 16, with_hidden: bool = False
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Per-token response log-probs ``[len]`` of each sequence under ``lm`` (no gradients, eval mode, the
    LM's scope, e.g. LoRA adapters off for a reference), and with ``with_hidden`` the final hidden
    state ``[len, H]`` that predicts each token (what a value head reads)."""
    logps: list[torch.Tensor] = []
    hidden: list[torch.Tensor] = []
    with lm.scoring():
        for start in range(0, len(seqs), batch_size):
            chunk = list(seqs[start : start + batch_size])
            out = sequence_logprobs(lm.model, chunk, pad_id=lm.pad_id, with_hidden=with_hidden)
            for i, s in enumerate(chunk):
                n = len(s.response)
                logps.append(out.token_logps[i, :n].detach().float().cpu())
                if with_hidden and out.hidden is not None:
                    hidden.append(out.hidden[i, :n].detach())
    return logps, (hidden if with_hidden else None)
