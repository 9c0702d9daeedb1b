"""RLOO: REINFORCE with a leave-one-out baseline over the n samples of each prompt.

Paper: Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
Human Feedback in LLMs" (arXiv 2402.14740), after Kool et al. 2019 ("Buy 4 REINFORCE samples, get a
baseline for free"). Listed by Tajwar et al. 2024 (arXiv 2404.14367) as a REINFORCE variant ("harness
variant" in our method catalog: the bandit code has the running-mean baseline, see ``reinforce``).

**Loss.** For the n samples y_1..y_n of a prompt with rewards r_i,
``A_i = r_i - mean_{j != i} r_j`` and the per-row loss is ``-A_i log pi(y_i|x)`` (sequence level: a
dense reward is summed first). With ``kl_coef > 0`` the reward is ``r - kl_coef * (log pi(y|x) -
log pi_ref(y|x))`` at sampling time, as in the paper (whose beta is 0.05 or 0.1 for LLMs; the bandit
code uses no KL, our default).

**Data.** Every round samples ``n`` completions per prompt from the current policy; the advantages
are computed in the sampler from each prompt's group, so the objective is pure and batch-independent.
Sample reuse is ``train.steps`` (steps on each round's fresh samples; the paper takes one step per
batch, reuse 1). Defaults: n = 10 (the bandit's N; the paper finds k = 4 good for LLMs), lr/rounds/steps
ours for the tiny didactic runs, matching ``reinforce`` so the two baselines compare at equal budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment_harness_plugins.methods.reinforce import sequence_kl
from harness import (
    LogProbBatch,
    RoundContext,
    Row,
    hookimpl,
    param,
    pg,
)
from harness.pg import leave_one_out_baseline, rollouts
from harness.rewards import sequence_reward

PAPER = "Ahmadian et al. 2024, arXiv 2402.14740 (RLOO); Kool et al. 2019; Tajwar et al. 2024, arXiv 2404.14367"


@dataclass(frozen=True)
class RLOOParams(pg.OnPolicyParams):
    n: int = param(10, "samples per prompt per round, >= 2 (bandit: N = 10; paper: k = 2 or 4)", ge=2)
    kl_coef: float = param(0.0, "sequence-level KL(pi || pi_ref) penalty in the reward (paper: 0.05-0.1)", ge=0)


def rloo_loss(logps: torch.Tensor, advantages: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-row ``-A log pi(y|x)`` with leave-one-out advantages ``A`` (constants)."""
    return -advantages.detach() * logps, {"advantage": advantages.mean().detach()}


def objective(batch: LogProbBatch, params: RLOOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss, metrics = rloo_loss(batch.logps["sample"], batch.values["advantage"])
    return loss, {**metrics, "reward": batch.values["reward"].mean()}


def sampler(ctx: RoundContext) -> list[Row]:
    p: RLOOParams = ctx.params
    outs = rollouts(ctx, **p.sampling())
    seqs = [o.sequence for o in outs]
    kl = sequence_kl(ctx, seqs) if p.kl_coef else [0.0] * len(outs)
    scores = torch.tensor([sequence_reward(o.reward) - p.kl_coef * k for o, k in zip(outs, kl, strict=True)])
    groups = scores.view(-1, p.n)  # rollouts come grouped by prompt, n each
    advantages = (groups - leave_one_out_baseline(groups)).flatten().tolist()
    return [
        Row({"sample": s}, {"reward": sequence_reward(o.reward), "advantage": a})
        for o, s, a in zip(outs, seqs, advantages, strict=True)
        if s.response
    ]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``rloo``."""
    register(pg.on_policy_spec(
        "rloo", "REINFORCE with a leave-one-out baseline over n on-policy samples per prompt",
        paper=PAPER, sampler=sampler, objective=objective, params=RLOOParams,
        real_train_defaults={"lr": 1e-6},  # as PPO (Ouyang et al. / Stiennon et al.: 1e-6): the REINFORCE family on LLMs
    ))
