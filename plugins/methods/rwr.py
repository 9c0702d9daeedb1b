"""RWR: reward-weighted regression, maximum likelihood on on-policy samples weighted by exp(r / tau).

Paper: Peters & Schaal 2007 (reward-weighted regression); as run by Tajwar et al. 2024 (arXiv
2404.14367): bandit code ``-exp(r / beta) log pi(a)``, LLM code ``reweighted_bc.py`` (exp(r / tau)
weights), with tau in {1, 10} in our method catalog. It samples on-policy but has NO negative
gradient: every weight is positive, so it only ever raises the likelihood of samples.

**Weights** are normalised over the round's samples in the sampler,
``w_i = exp(r_i / tau) / mean_j exp(r_j / tau)`` (computed stably), so the loss keeps SFT's scale and
stays batch-independent (normalising inside a batch would make batch 8 x accumulation 1 differ from
batch 1 x accumulation 8). A dense reward is summed first. Per-row loss ``-w log pi(y|x)``.

Sample reuse is ``train.steps`` (steps on each round's fresh samples). Defaults: tau = 1 (the lower
value of the catalog's {1, 10}), n = 10 as in the bandit's on-policy scripts; lr/rounds/steps are ours
(same budget as ``reinforce``).
"""

from __future__ import annotations

import math
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
from harness.pg import rollouts
from harness.rewards import sequence_reward

PAPER = "Peters & Schaal 2007 (RWR); as in Tajwar et al. 2024, arXiv 2404.14367"


@dataclass(frozen=True)
class RWRParams(pg.OnPolicyParams):
    n: int = param(10, "samples per prompt per round (bandit code: N = 10)", ge=1)
    tau: float = param(1.0, "temperature of the weights exp(r / tau) (catalog: 1 or 10)", gt=0)


def rwr_weights(rewards: list[float], tau: float) -> list[float]:
    """``exp(r_i / tau)`` normalised to mean 1 over the given rewards (computed without overflow)."""
    top = max(rewards)
    raw = [math.exp((r - top) / tau) for r in rewards]
    mean = sum(raw) / len(raw)
    return [w / mean for w in raw]


def rwr_loss(logps: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-row weighted negative log-likelihood ``-w log pi(y|x)`` (weights are constants)."""
    return -weights.detach() * logps, {"weight_max": weights.max().detach()}


def objective(batch: LogProbBatch, params: RWRParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss, metrics = rwr_loss(batch.logps["sample"], batch.values["weight"])
    return loss, {**metrics, "reward": batch.values["reward"].mean()}


def sampler(ctx: RoundContext) -> list[Row]:
    p: RWRParams = ctx.params
    outs = [o for o in rollouts(ctx, **p.sampling()) if o.completion.ids]
    rewards = [sequence_reward(o.reward) for o in outs]
    weights = rwr_weights(rewards, p.tau)
    return [Row({"sample": o.sequence}, {"reward": r, "weight": w})
            for o, r, w in zip(outs, rewards, weights, strict=True)]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``rwr``."""
    register(pg.on_policy_spec(
        "rwr", "Reward-weighted regression: on-policy samples, weights exp(r/tau), no negative gradient",
        paper=PAPER, sampler=sampler, objective=objective, params=RWRParams, reference="none",
        real_train_defaults={"lr": 1e-6},  # as PPO (Ouyang et al. / Stiennon et al.: 1e-6): the REINFORCE family on LLMs
    ))
