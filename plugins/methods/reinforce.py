"""REINFORCE with a running-mean baseline: on-policy samples, score-function gradient, negative gradient.

Paper: Williams 1992 (REINFORCE); as run by Tajwar et al. 2024 (arXiv 2404.14367), whose bandit code
minimises ``-log pi(a) (r - mean) / std`` with the mean and std of ALL rewards seen so far, plus a
``beta * entropy`` bonus whose best value was 0.

**Data.** Every round samples ``n`` completions per prompt (``limit`` prompts, all by default) from the
current policy and scores them with the method's reward (``reward_source``: the benchmark's, a
Bradley-Terry RM, or an LLM judge; see :mod:`harness.training.rewards`). **Sample reuse** (Tajwar et al.'s axis
ii) is ``train.steps``: the optimizer steps taken on each round's fresh samples; with the default
``train.batch_size`` = one round's samples every step sees the whole batch, so reuse = epochs.

**Advantages** are computed in the sampler, so the objective is pure and batch-independent (batch 8 x
accumulation 1 equals batch 1 x accumulation 8): the running moments (``ctx.state``, saved with
checkpoints) are first updated with the round's total rewards, then
``A_t = (G_t - kl_coef * KL - mean) / std`` with ``G_t`` the reward-to-go of token t (dense rewards; a
scalar reward gives ``G_t = r`` at every token) and ``KL = log pi(y) - log pi_ref(y)`` at sampling time
(only when ``kl_coef > 0``; the bandit code has none). The loss is ``-sum_t A_t log pi(a_t|s_t)
- entropy_coef * mean_t H_t``.

Choices: the baseline is one running mean of total returns for every position (with dense rewards,
G_t for t > 0 is compared with a sequence-level mean). Defaults (bandit budget, tiny model): 10 prompts
x n = 10 samples per round as in the paper's on-policy scripts; lr, rounds and steps are ours (see the
``train_defaults``); the paper's MLP used Adam at 1e-3 for 100 rounds x 15 steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import (
    LogProbBatch,
    RoundContext,
    Row,
    hookimpl,
    param,
    pg,
)
from harness.lm import masked_mean
from harness.pg import (
    RunningMoments,
    discounted_returns,
    entropy_from_logits,
    reinforce_loss,
    rollouts,
    stack_token_values,
    token_values,
)
from harness.rewards import sequence_reward, token_rewards

PAPER = "Williams 1992; as in Tajwar et al. 2024, arXiv 2404.14367 (bandit: running mean/std baseline)"


@dataclass(frozen=True)
class ReinforceParams(pg.OnPolicyParams):
    n: int = param(10, "samples per prompt per round (bandit code: N = 10)", ge=1)
    normalize: bool = param(True, "divide by the running std (the bandit code does)")
    entropy_coef: float = param(0.0, "entropy bonus beta (bandit code: 0 was best)")
    kl_coef: float = param(0.0, "sequence-level KL(pi || pi_ref) penalty in the reward (bandit code: 0)", ge=0)
    gamma: float = param(1.0, "discount of dense per-token rewards", ge=0, le=1)


def reinforce_objective(token_logps: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor,
                        logits: torch.Tensor | None = None, *, entropy_coef: float = 0.0
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-row ``-sum_t A_t log pi(a_t) - entropy_coef * mean_t H_t`` and its metrics."""
    loss = reinforce_loss(token_logps, advantages, mask)
    metrics = {"advantage": masked_mean(advantages, mask).mean().detach()}
    if logits is not None and entropy_coef:
        entropy = masked_mean(entropy_from_logits(logits), mask)
        loss = loss - entropy_coef * entropy
        metrics["entropy"] = entropy.mean().detach()
    return loss, metrics


def objective(batch: LogProbBatch, params: ReinforceParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    tok = batch.tokens["sample"]
    adv = stack_token_values(batch.values, "adv", tok.mask.shape[1])
    loss, metrics = reinforce_objective(tok.token_logps, tok.mask, adv, tok.logits, entropy_coef=params.entropy_coef)
    metrics["reward"] = batch.values["reward"].mean()
    return loss, metrics


def sequence_kl(ctx: RoundContext, seqs: list) -> list[float]:
    """``log pi(y|x) - log pi_ref(y|x)`` of each sequence at sampling time (k1, summed over tokens)."""
    if ctx.reference is None:
        raise ValueError("a KL penalty needs a reference model")
    return (ctx.policy.logprobs(seqs) - ctx.reference.logprobs(seqs)).tolist()


def sampler(ctx: RoundContext) -> list[Row]:
    p: ReinforceParams = ctx.params
    outs = [o for o in rollouts(ctx, **p.sampling()) if o.completion.ids]
    seqs = [o.sequence for o in outs]
    kl = sequence_kl(ctx, seqs) if p.kl_coef else [0.0] * len(outs)
    width = max(len(s.response) for s in seqs)
    returns = []
    for o, k in zip(outs, kl, strict=True):
        r = torch.tensor(token_rewards(o.reward, len(o.completion.ids)))
        r[-1] -= p.kl_coef * k
        returns.append(discounted_returns(r, gamma=p.gamma))
    moments: RunningMoments = ctx.state.setdefault("reinforce/moments", RunningMoments())
    moments.update([float(g[0]) for g in returns])
    scale = moments.std if p.normalize else 1.0
    return [
        Row({"sample": o.sequence}, {"reward": sequence_reward(o.reward),
                                     **token_values("adv", ((g - moments.mean) / (scale + 1e-8)).tolist(), width)})
        for o, g in zip(outs, returns, strict=True)
    ]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``reinforce``."""
    register(pg.on_policy_spec(
        "reinforce", "REINFORCE on on-policy samples with a running mean/std baseline (negative gradient)",
        paper=PAPER, sampler=sampler, objective=objective, params=ReinforceParams, needs_hidden=True,
        real_train_defaults={"lr": 1e-6},  # as PPO (Ouyang et al. / Stiennon et al.: 1e-6): the REINFORCE family on LLMs
    ))
