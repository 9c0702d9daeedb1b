"""NCA: noise-contrastive alignment, pairwise form: absolute (not relative) likelihood targets.

Paper: Chen, Xu, Tang, Zhu 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards"
(arXiv 2402.05369), NCA for pairwise preferences: with r = beta * h, h = log pi(y|x) - log pi_ref(y|x)
summed over tokens, per pair ``-log sigmoid(r_w) - 0.5 log sigmoid(-r_w) - 0.5 log sigmoid(-r_l)``.
Unlike DPO, whose loss depends only on r_w - r_l (both likelihoods may fall together), NCA's chosen term
has its minimum at sigmoid(r_w) = 2/3, i.e. r_w = log 2 > 0, so it holds the chosen response above the
reference, and the rejected term always pushes r_l down.

Defaults: beta 0.1 [U: TRL's ``nca_pair`` default; the paper sweeps beta, with 0.01 common in its runs].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Chen, Xu, Tang, Zhu 2024, arXiv 2402.05369 (NCA)"


@dataclass(frozen=True)
class NCAParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def nca_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float) -> torch.Tensor:
    """Per-pair ``-log sigmoid(beta h_w) - 0.5 log sigmoid(-beta h_w) - 0.5 log sigmoid(-beta h_l)``."""
    r_w, r_l = beta * h_w, beta * h_l
    return -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)


def objective(batch: LogProbBatch, params: NCAParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return nca_loss(h_w, h_l, beta=params.beta), pair_metrics(h_w, h_l, beta=params.beta)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``nca``."""
    register(MethodSpec(
        name="nca", family="preference",
        description="NCA (pairwise): absolute targets, chosen reward held at log 2, rejected always pushed down",
        paper=PAPER, sampler=sampler, objective=objective, params=NCAParams,
        needs=frozenset({PREFERENCES}), reference="initial",
    ))
