"""RAFT: reward-ranked fine-tuning (rejection-sampling fine-tuning): SFT on each prompt's top-k samples.

Paper: Dong et al. 2023, "RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment"
(arXiv 2304.06767), Algorithm 1: each stage samples K responses per prompt from the current model, keeps
the best by reward ("local ranking"), and fine-tunes on the kept ones with the ordinary LM loss. With a
threshold on the reward instead (keep only correct answers of a verifiable task) it is the
rejection-sampling fine-tuning (RFT) of Yuan et al. 2023 (arXiv 2308.01825).

**Loss.** Per kept sample, the NLL ``-log pi(y|x)`` averaged over its tokens (the LM loss of the paper's
fine-tuning step; ``normalize = "sum"`` sums instead). No reference model, no negative gradient.

**Data.** Each round: ``n`` samples per prompt from the current policy (the paper's K; default 8), scored
by the method's reward (summed if dense), the top ``keep`` per prompt retained (default 1, the paper's
local ranking) if their reward exceeds ``min_reward`` (default: no threshold). Prompts whose samples all
tie are skipped (nothing to rank; on a 0/1 task that is usually "all wrong"), as ``best-of-n`` does by
default; a round with nothing kept trains on one zero-weight row. ``best-of-n`` is the k = 1, summed-NLL,
negative-gradient-optional sibling from Tajwar et al.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
from harness.pg import rollouts
from harness.rewards import sequence_reward

PAPER = "Dong et al. 2023, arXiv 2304.06767 (RAFT); Yuan et al. 2023, arXiv 2308.01825 (rejection-sampling FT)"


@dataclass(frozen=True)
class RAFTParams(pg.OnPolicyParams):
    n: int = param(8, "samples per prompt per round (the paper's K)", ge=1)
    keep: int = param(1, "samples kept per prompt, the top by reward (paper: 1, local ranking)", ge=1)
    min_reward: float | None = param(None, "keep a sample only if its reward exceeds this (None: no threshold)")
    normalize: Literal["sum", "mean"] = param("mean", "NLL averaged over a sample's tokens (LM loss) or summed")


def select(rewards: list[float], *, keep: int, min_reward: float | None) -> list[int]:
    """Indices of one prompt's kept samples: the top ``keep`` by reward (first on ties), above ``min_reward``;
    none if every reward ties."""
    if max(rewards) <= min(rewards):
        return []
    order = sorted(range(len(rewards)), key=lambda i: -rewards[i])[:keep]
    return [i for i in order if min_reward is None or rewards[i] > min_reward]


def raft_loss(logps: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row NLL ``-log pi(y|x)``, divided by the length when ``lengths`` is given."""
    return -logps / lengths.clamp(min=1) if lengths is not None else -logps


def objective(batch: LogProbBatch, params: RAFTParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    lengths = batch.lengths("sample") if params.normalize == "mean" else None
    loss = raft_loss(batch.logps["sample"], lengths) * batch.values["weight"]
    return loss, {"reward": batch.values["reward"].mean(), "kept": batch.values["kept"].mean()}


def sampler(ctx: RoundContext) -> list[Row]:
    p: RAFTParams = ctx.params
    outs = rollouts(ctx, **p.sampling())
    groups: dict[int, list] = {}
    for o in outs:
        groups.setdefault(o.group, []).append(o)
    picked = []
    for group in groups.values():
        rewards = [sequence_reward(o.reward) for o in group]
        picked += [(group[i].sequence, rewards[i]) for i in select(rewards, keep=p.keep, min_reward=p.min_reward)
                   if group[i].completion.ids]
    kept = len(picked) / max(len(outs), 1)
    if not picked:
        empty = Sequence(ctx.data.prompts()[0], ())
        return [Row({"sample": empty}, {"reward": 0.0, "weight": 0.0, "kept": 0.0})]
    return [Row({"sample": s}, {"reward": r, "weight": 1.0, "kept": kept}) for s, r in picked]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``raft``."""
    register(pg.on_policy_spec(
        "raft", "RAFT / rejection-sampling FT: SFT on each prompt's top-k on-policy samples (optionally "
        "above a reward threshold)",
        paper=PAPER, sampler=sampler, objective=objective, params=RAFTParams, reference="none",
        train={"batch_size": 10},
    ))
