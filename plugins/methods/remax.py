"""ReMax: REINFORCE with the greedy response's reward as the baseline.

Paper: Li et al. 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for
Aligning Large Language Models" (arXiv 2310.10505), Algorithm 1: for each prompt, one sampled response
y and one greedy response y_hat; the advantage is ``r(x, y) - r(x, y_hat)`` and the loss
``-(r(x, y) - r(x, y_hat)) log pi(y|x)`` (sequence level). The greedy baseline needs no value model and
no group: one extra generation per prompt.

Choices: ``n`` samples per prompt share the prompt's greedy baseline (the paper: n = 1; default 1, so a
round costs 2 generations per prompt); with ``kl_coef > 0`` both rewards are penalised by their
sequence-level ``log pi - log pi_ref`` at sampling time (the paper's RLHF reward carries a KL penalty;
default 0, as the other on-policy methods here). Rounds/steps/lr match ``rloo``.
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
    samplers,
)
from harness.pg import response_length
from harness.rewards import current_reward, sequence_reward

PAPER = "Li et al. 2023, arXiv 2310.10505 (ReMax)"


@dataclass(frozen=True)
class ReMaxParams(pg.OnPolicyParams):
    n: int = param(1, "sampled responses per prompt, sharing its greedy baseline (paper: 1)", ge=1)
    temperature: float = param(1.0, "sampling temperature (the baseline is greedy)", ge=0)
    kl_coef: float = param(0.0, "sequence-level KL(pi || pi_ref) penalty in both rewards", ge=0)


def remax_loss(logps: torch.Tensor, reward: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Per-row ``-(r - r_greedy) log pi(y|x)`` (the advantage is a constant)."""
    return -(reward - baseline).detach() * logps


def objective(batch: LogProbBatch, params: ReMaxParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    v = batch.values
    loss = remax_loss(batch.logps["sample"], v["reward"], v["baseline"])
    return loss, {"reward": v["reward"].mean(), "greedy_reward": v["baseline"].mean(),
                  "advantage": (v["reward"] - v["baseline"]).mean()}


def sampler(ctx: RoundContext) -> list[Row]:
    p: ReMaxParams = ctx.params
    prompts = pg.round_prompts(ctx, p.limit)
    length = response_length(ctx, p.max_new_tokens)
    sampled = samplers.generate(ctx, "policy", prompts, p.n, {"temperature": p.temperature, "max_new_tokens": length})
    greedy = samplers.generate(ctx, "policy", prompts, 1, {"temperature": 0.0, "max_new_tokens": length})
    reward = current_reward(ctx)
    rows = []
    for prompt, cs, (g,) in zip(prompts, sampled, greedy, strict=True):
        cs = [c for c in cs if c.ids]
        if not cs:
            continue
        seqs = [c.as_sequence() for c in cs]
        base = sequence_reward(reward(prompt, g))
        rs = [sequence_reward(reward(prompt, c)) for c in cs]
        if p.kl_coef:
            kl = sequence_kl(ctx, seqs + ([g.as_sequence()] if g.ids else []))
            rs = [r - p.kl_coef * k for r, k in zip(rs, kl, strict=False)]
            base -= p.kl_coef * (kl[-1] if g.ids else 0.0)
        rows += [Row({"sample": s}, {"reward": r, "baseline": base}) for s, r in zip(seqs, rs, strict=True)]
    return rows


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``remax``."""
    register(pg.on_policy_spec(
        "remax", "ReMax: REINFORCE with the greedy response's reward as baseline (no value model, no group)",
        paper=PAPER, sampler=sampler, objective=objective, params=ReMaxParams,
    ))
