"""GRPO: group relative policy optimisation: group-normalised advantages, a clipped ratio, KL to the reference.

Paper: Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
Models" (arXiv 2402.03300), eq. 3 (outcome supervision). For the G samples o_1..o_G of a prompt with
rewards r_i, ``A_i = (r_i - mean(r)) / std(r)`` for every token of o_i, and the loss (minimised)

    (1/G) sum_i (1/|o_i|) sum_t [ -min(rho_it A_i, clip(rho_it, 1 - eps, 1 + eps) A_i) + beta KL_it ]

with ``rho_it = pi(o_it | s_it) / pi_old(o_it | s_it)`` (pi_old = the policy that sampled) and the
per-token k3 estimator ``KL_it = pi_ref/pi - log(pi_ref/pi) - 1`` (unbiased, >= 0).

**Data.** Every round samples ``n`` completions per prompt from the current policy and scores them with
the method's reward (summed if dense); the group advantages and pi_old's per-token log-probs are fixed
in the sampler (rows carry ``advantage``, ``norm`` = the divisor of the row's token sum, and
``old_logp@t``), so the objective is pure and batch-independent. Sample reuse is ``train.steps``
(GRPO's mu; the paper uses mu = 1, TRL's ``num_iterations`` likewise): with more steps the ratio and
its clip act as in PPO.

Defaults: G = n = 8 (TRL's; the paper's 64 is an LLM budget); eps 0.2; beta 0.04 (the paper's);
std with Bessel's correction and 1e-4 added (TRL's). A group whose rewards all tie has A = 0 (only the
KL term acts). Rounds/steps/lr match ``rloo`` so the on-policy methods compare at one budget.

The same machinery, with other choices, is ``dr-grpo`` (:mod:`.dr_grpo`) and ``dapo`` (:mod:`.dapo`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness import (
    LogProbBatch,
    RoundContext,
    Row,
    Sequence,
    hookimpl,
    param,
    pg,
)
from harness.pg import (
    kl_k3,
    response_length,
    rollouts,
    stack_token_values,
    token_logprobs,
    token_values,
)
from harness.rewards import sequence_reward

PAPER = "Shao et al. 2024, arXiv 2402.03300 (GRPO, DeepSeekMath)"
Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GRPOParams(pg.OnPolicyParams):
    n: int = param(8, "samples per prompt (the group size G), >= 2", ge=2)
    clip: float = param(0.2, "ratio clip epsilon", ge=0)
    kl_coef: float = param(0.04, "beta, weight of the per-token k3 KL to the reference (paper: 0.04)", ge=0)
    scale_rewards: bool = param(True, "divide group advantages by the group's reward std")


# -- pure pieces -----------------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, *, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """``[P, G]`` rewards -> ``r - mean_group`` (``/ (std_group + eps)`` when ``scale``; std with ddof 1)."""
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.std(-1, keepdim=True) + eps) if scale else centred


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, norm: torch.Tensor, *, clip_low: float, clip_high: float, kl_coef: float
              ) -> tuple[torch.Tensor, Metrics]:
    """Per-row ``sum_t mask * (-min(rho A, clip(rho, 1 - clip_low, 1 + clip_high) A) + kl_coef KL_k3) / norm``.

    ``logp``, ``old_logp``, ``ref_logp`` and ``mask`` are ``[B, T]``; ``advantages`` and ``norm`` ``[B]``."""
    adv = advantages.detach()[:, None]
    ratio = torch.exp(logp - old_logp.detach())
    unclipped, clipped = -adv * ratio, -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    metrics = {"clipfrac": ((clipped > unclipped).float() * mask).sum() / mask.sum().clamp(min=1)}
    if kl_coef and ref_logp is not None:
        kl = kl_k3(logp, ref_logp.detach())
        per_token = per_token + kl_coef * kl
        metrics["kl_ref"] = ((kl.detach() * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    return (per_token * mask).sum(-1) / norm, metrics


# -- sampling --------------------------------------------------------------------------------------------------

Shaping = Callable[[list[float], list[Sequence], int], list[float]]


@dataclass
class Group:
    """One prompt's samples, rewards and advantages."""

    seqs: list[Sequence]
    rewards: list[float]
    advantages: list[float]


def sample_groups(ctx: RoundContext, p: GRPOParams, *, limit: int | None = None,
                  shaping: Shaping | None = None) -> list[Group]:
    """``p.n`` samples for each of the round's prompts with rewards (reshaped by ``shaping(rewards, seqs,
    max_len)`` if given) and group advantages."""
    max_len = response_length(ctx, p.max_new_tokens)
    outs = rollouts(ctx, n=p.n, limit=limit if limit is not None else p.limit, temperature=p.temperature,
                    max_new_tokens=max_len)
    seqs = [o.sequence for o in outs]
    rewards = [sequence_reward(o.reward) for o in outs]
    if shaping is not None:
        rewards = shaping(rewards, seqs, max_len)
    adv = group_advantages(torch.tensor(rewards, dtype=torch.float64).view(-1, p.n), scale=p.scale_rewards)
    return [Group(seqs[g * p.n:(g + 1) * p.n], rewards[g * p.n:(g + 1) * p.n], adv[g].tolist())
            for g in range(len(seqs) // p.n)]


def rows_from_groups(ctx: RoundContext, groups: list[Group], norm: Callable[[Sequence], float],
                     extra: dict[str, float] | None = None) -> list[Row]:
    """Training rows of non-empty samples: pi_old's per-token log-probs (one no-grad forward), the
    advantage, the row's divisor ``norm(seq)`` and the sample's reward."""
    items = [(s, r, a) for g in groups for s, r, a in zip(g.seqs, g.rewards, g.advantages, strict=True) if s.response]
    if not items:
        return []
    old, _ = token_logprobs(ctx.policy, [s for s, _, _ in items])
    width = max(len(s.response) for s, _, _ in items)
    return [Row({"sample": s}, {"reward": r, "advantage": a, "norm": float(norm(s)), "weight": 1.0, **(extra or {}),
                                **token_values("old_logp", o.tolist(), width)})
            for (s, r, a), o in zip(items, old, strict=True)]


def placeholder(ctx: RoundContext, extra: dict[str, float] | None = None) -> list[Row]:
    """One zero-weight row (zero gradient): a round where no sample could be used."""
    empty = Sequence(ctx.data.prompts()[0], ())
    return [Row({"sample": empty}, {"reward": 0.0, "advantage": 0.0, "norm": 1.0, "weight": 0.0, **(extra or {}),
                                    "old_logp@0": 0.0})]


def sampler(ctx: RoundContext) -> list[Row]:
    groups = sample_groups(ctx, ctx.params)
    rows = rows_from_groups(ctx, groups, norm=lambda s: len(s.response))
    return rows or placeholder(ctx)


def group_objective(batch: LogProbBatch, params: GRPOParams, *, clip_low: float, clip_high: float
                    ) -> tuple[torch.Tensor, Metrics]:
    """The GRPO-family objective on a batch of ``sample`` rows (shared by dr-grpo and dapo)."""
    tok = batch.tokens["sample"]
    width = tok.mask.shape[1]
    old = stack_token_values(batch.values, "old_logp", width)
    ref = batch.ref_tokens.get("sample")
    loss, metrics = grpo_loss(tok.token_logps, old, ref, batch.values["advantage"], tok.mask, batch.values["norm"],
                              clip_low=clip_low, clip_high=clip_high, kl_coef=params.kl_coef)
    return loss * batch.values["weight"], {**metrics, "reward": batch.values["reward"].mean()}


def objective(batch: LogProbBatch, params: GRPOParams) -> tuple[torch.Tensor, Metrics]:
    return group_objective(batch, params, clip_low=params.clip, clip_high=params.clip)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``grpo``."""
    register(pg.on_policy_spec(
        "grpo", "GRPO: group-normalised advantages, clipped ratio, per-token k3 KL to the reference, token mean "
        "per sample", paper=PAPER, sampler=sampler, objective=objective, params=GRPOParams,
    ))
