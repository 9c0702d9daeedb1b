"""Dr. GRPO: GRPO "done right", without the length and std normalisations that bias it.

Paper: Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective" (arXiv 2503.20783),
section 3. GRPO divides each sample's token sum by its length |o_i| (so a wrong answer's per-token
penalty shrinks as it grows: longer wrong answers) and each group's advantages by the group's reward std
(so prompts that are nearly all right or all wrong weigh most). Dr. GRPO removes both:
``A_i = r_i - mean(r)`` and each row's token sum is divided by one constant, the generation budget L
(``max_new_tokens``), the same for every sample:

    (1/G) sum_i (1/L) sum_t [ -min(rho_it A_i, clip(rho_it, 1 - eps, 1 + eps) A_i) + beta KL_it ]

Everything else is :mod:`.grpo` (sampling, pi_old, the clipped ratio). Defaults: eps 0.2, n = 8; beta 0
[U: the paper's objective is written without the KL term, as usual for rule-based rewards; set
``kl_coef = 0.04`` to keep GRPO's].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment_harness_plugins.methods.grpo import (
    GRPOParams,
    group_objective,
    placeholder,
    rows_from_groups,
    sample_groups,
)
from harness import LogProbBatch, RoundContext, Row, hookimpl, param, pg
from harness.pg import response_length

PAPER = "Liu et al. 2025, arXiv 2503.20783 (Dr. GRPO)"


@dataclass(frozen=True)
class DrGRPOParams(GRPOParams):
    kl_coef: float = param(0.0, "weight of the per-token k3 KL to the reference (paper: none)", ge=0)
    scale_rewards: bool = param(False, "divide advantages by the group's reward std (Dr. GRPO: no)")


def sampler(ctx: RoundContext) -> list[Row]:
    p: DrGRPOParams = ctx.params
    budget = response_length(ctx, p.max_new_tokens)
    rows = rows_from_groups(ctx, sample_groups(ctx, p), norm=lambda s: budget)
    return rows or placeholder(ctx)


def objective(batch: LogProbBatch, params: DrGRPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return group_objective(batch, params, clip_low=params.clip, clip_high=params.clip)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``dr-grpo``."""
    register(pg.on_policy_spec(
        "dr-grpo", "Dr. GRPO: GRPO without std-normalised advantages or per-sample length "
        "normalisation (token sums / the generation budget)",
        paper=PAPER, sampler=sampler, objective=objective, params=DrGRPOParams,
    ))
