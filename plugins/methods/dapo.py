"""DAPO: decoupled clip and dynamic sampling policy optimisation (GRPO with four changes).

Paper: Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale" (arXiv
2503.14476). On top of :mod:`.grpo` (group-normalised advantages, clipped ratio):

1. **Clip-higher**: separate clip ranges, ``clip(rho, 1 - eps_low, 1 + eps_high)`` with eps_low 0.2 and
   eps_high 0.28 (the paper's), so low-probability tokens can rise further (against entropy collapse).
2. **Token-level loss**: every token of the batch weighs the same, ``sum_i sum_t l_it / sum_i |o_i|``
   instead of GRPO's mean of per-sample means. Here each row's token sum is divided by the MEAN response
   length of the round's samples, so the mean over the round's rows is exactly that token-level loss (the
   paper normalises over each mini-batch; with ``train.batch_size`` = the round's rows they coincide).
3. **Dynamic sampling**: groups whose rewards all tie (all right or all wrong: zero advantage, no
   gradient) are dropped, and further prompts are drawn (up to ``max_draws`` draws) until ``limit``
   informative groups are found. With ``limit`` unset every prompt is already drawn, so it only filters.
   A round with no informative group trains on one zero-weight row.
4. **Overlong reward shaping** (soft overlong punishment, eq. 13): with L_max the generation budget and
   L_cache = ``overlong_cache``, a response of length |y| gets ``0`` if |y| <= L_max - L_cache,
   ``((L_max - L_cache) - |y|) / L_cache`` in the cache zone, and ``-1`` beyond L_max (added to the reward).
   Default off (``overlong_cache = 0``): on one-token didactic responses any cache would punish every
   answer; the paper's setting is L_max 20480 with L_cache 4096 (a fifth).

No KL term (the paper removes it: kl_coef 0). Defaults otherwise GRPO's (n = 8; the paper's G = 16).
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
from harness import LogProbBatch, RoundContext, Row, Sequence, hookimpl, param, pg

PAPER = "Yu et al. 2025, arXiv 2503.14476 (DAPO)"


@dataclass(frozen=True)
class DAPOParams(GRPOParams):
    clip: float = param(0.2, "eps_low: lower clip of the ratio (paper: 0.2)", ge=0)
    clip_high: float = param(0.28, "eps_high: upper clip of the ratio (paper: 0.28)", ge=0)
    kl_coef: float = param(0.0, "weight of the per-token k3 KL to the reference (paper: removed)", ge=0)
    dynamic_sampling: bool = param(True, "drop groups whose rewards all tie, draw more prompts to refill")
    max_draws: int = param(3, "most prompt draws per round when refilling (dynamic sampling)", ge=1)
    overlong_cache: int = param(0, "L_cache of the soft overlong penalty in tokens (0 = off; paper: 4096 of 20480)",
                                ge=0)


def overlong_penalty(length: int, max_len: int, cache: int) -> float:
    """DAPO's soft overlong punishment of a response of ``length`` tokens (0 when ``cache`` is 0)."""
    if cache <= 0 or length <= max_len - cache:
        return 0.0
    if length <= max_len:
        return ((max_len - cache) - length) / cache
    return -1.0


def informative(rewards: list[float]) -> bool:
    """Whether a group's rewards differ (a tied group has zero advantage and no gradient)."""
    return max(rewards) > min(rewards)


def sampler(ctx: RoundContext) -> list[Row]:
    p: DAPOParams = ctx.params

    def shaping(rewards: list[float], seqs: list[Sequence], max_len: int) -> list[float]:
        return [r + overlong_penalty(len(s.response), max_len, p.overlong_cache) for r, s in zip(rewards, seqs,
                                                                                                 strict=True)]

    target = p.limit if p.limit is not None else len(ctx.data.prompts())
    kept, drawn = [], 0
    for _ in range(p.max_draws):
        groups = sample_groups(ctx, p, shaping=shaping)
        drawn += len(groups)
        kept += [g for g in groups if informative(g.rewards)] if p.dynamic_sampling else groups
        if not p.dynamic_sampling or p.limit is None or len(kept) >= target:
            break
    kept = kept[:target]
    extra = {"informative_groups": len(kept) / max(drawn, 1)}
    lengths = [len(s.response) for g in kept for s in g.seqs if s.response]
    if not lengths:
        return placeholder(ctx, extra)
    mean_len = sum(lengths) / len(lengths)
    return rows_from_groups(ctx, kept, norm=lambda s: mean_len, extra=extra)


def objective(batch: LogProbBatch, params: DAPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss, metrics = group_objective(batch, params, clip_low=params.clip, clip_high=params.clip_high)
    return loss, {**metrics, "informative_groups": batch.values["informative_groups"].mean()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``dapo``."""
    register(pg.on_policy_spec(
        "dapo", "DAPO: GRPO with clip-higher, token-level loss, dynamic sampling (drop tied groups) "
        "and soft overlong reward shaping, no KL",
        paper=PAPER, sampler=sampler, objective=objective, params=DAPOParams,
    ))
