"""REINFORCE++: REINFORCE with PPO's clipped ratio, a per-token KL penalty and batch-normalised advantages.

Paper: Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models" (arXiv
2501.03262). No critic and no group baseline:

- per-token reward ``r_t = -beta KL_t`` with ``KL_t = log pi_old(y_t|s_t) - log pi_ref(y_t|s_t)`` (k1, at
  sampling time), plus the task reward r(x, y) at the last token;
- return ``G_t = sum_{s >= t} r_s`` (gamma 1), and advantages normalised over ALL tokens of the round's
  batch, ``A_t = (G_t - mean) / std`` (global, not per prompt: the paper's point against GRPO's per-group
  normalisation);
- loss per row: the token mean of PPO's clipped surrogate ``max(-A rho, -A clip(rho, 1 - eps, 1 + eps))``.

Defaults: eps 0.2, beta 0.01 [U: the paper's KL coefficient differs by experiment]; n = 4 samples per
prompt (the method works with 1; several give the same budget as the group methods); rounds/steps/lr
match ``rloo``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import (
    HarnessError,
    LogProbBatch,
    RoundContext,
    Row,
    hookimpl,
    param,
    pg,
)
from harness.lm import masked_mean
from harness.pg import (
    clipped_surrogate,
    discounted_returns,
    pad_rows,
    rollouts,
    stack_token_values,
    token_logprobs,
    token_values,
    whiten,
)
from harness.rewards import sequence_reward, token_rewards

PAPER = "Hu 2025, arXiv 2501.03262 (REINFORCE++)"


@dataclass(frozen=True)
class ReinforcePPParams(pg.OnPolicyParams):
    n: int = param(4, "samples per prompt per round", ge=1)
    clip: float = param(0.2, "ratio clip epsilon", ge=0)
    kl_coef: float = param(0.01, "beta, per-token k1 KL penalty in the reward", ge=0)


def token_advantages(task_rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, *, kl_coef: float
                     ) -> torch.Tensor:
    """``[B, T]`` advantages: returns of ``-kl_coef * kl`` per token plus the (dense or last-token) task
    rewards, whitened over every response token of the batch."""
    returns = discounted_returns(task_rewards - kl_coef * kl, mask)
    return whiten(returns, mask)


def reinforce_pp_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                      *, clip: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-row token mean of the clipped surrogate."""
    per_token, clipped = clipped_surrogate(logp, old_logp, advantages.detach(), clip)
    return masked_mean(per_token, mask), {"clipfrac": masked_mean(clipped, mask).mean()}


def objective(batch: LogProbBatch, params: ReinforcePPParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    tok = batch.tokens["sample"]
    width = tok.mask.shape[1]
    loss, metrics = reinforce_pp_loss(tok.token_logps, stack_token_values(batch.values, "old_logp", width),
                                      stack_token_values(batch.values, "adv", width), tok.mask, clip=params.clip)
    return loss, {**metrics, "reward": batch.values["reward"].mean()}


def sampler(ctx: RoundContext) -> list[Row]:
    p: ReinforcePPParams = ctx.params
    if ctx.reference is None:
        raise HarnessError("reinforce-pp needs a reference model for its KL penalty")
    outs = [o for o in rollouts(ctx, **p.sampling()) if o.completion.ids]
    seqs = [o.sequence for o in outs]
    old, _ = token_logprobs(ctx.policy, seqs)
    ref, _ = token_logprobs(ctx.reference, seqs)
    width = max(len(s.response) for s in seqs)
    mask = pad_rows([torch.ones(len(s.response)) for s in seqs], width)
    task = pad_rows([torch.tensor(token_rewards(o.reward, len(s.response))) for o, s in zip(outs, seqs, strict=True)],
                width)
    adv = token_advantages(task, (pad_rows(old, width) - pad_rows(ref, width)) * mask, mask, kl_coef=p.kl_coef)
    return [Row({"sample": s}, {"reward": sequence_reward(o.reward),
                                **token_values("old_logp", old[i].tolist(), width),
                                **token_values("adv", adv[i, : len(s.response)].tolist(), width)})
            for i, (o, s) in enumerate(zip(outs, seqs, strict=True))]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``reinforce-pp``."""
    register(pg.on_policy_spec(
        "reinforce-pp", "REINFORCE++: per-token KL-penalised returns, advantages normalised over the whole batch, "
        "PPO's clipped ratio, no critic",
        paper=PAPER, sampler=sampler, objective=objective, params=ReinforcePPParams,
    ))
