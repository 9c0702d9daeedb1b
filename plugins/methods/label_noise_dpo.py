"""cDPO and robust DPO (rDPO): DPO for preference labels flipped with probability epsilon.

Two methods, one file (the losses differ by a sign and a factor), h = log pi(y|x) - log pi_ref(y|x)
summed over tokens, m = h_w - h_l:

- ``cdpo`` (conservative DPO; Mitchell 2023, "A note on DPO with noisy preferences & relationship to
  IPO"): label smoothing, ``(1 - eps) * -log sigmoid(beta m) + eps * -log sigmoid(-beta m)``. It is the
  DPO loss against soft targets: its gradient vanishes at sigmoid(beta m) = 1 - eps, so the margin stops
  at a finite value instead of growing without bound.
- ``robust-dpo`` (Chowdhury, Kini, Natarajan 2024, "Provably Robust DPO: Aligning Language Models with
  Noisy Feedback", arXiv 2403.00409, eq. 8): ``[(1 - eps) * -log sigmoid(beta m) - eps * -log
  sigmoid(-beta m)] / (1 - 2 eps)``, an unbiased estimate of the clean DPO loss when each label is flipped
  with probability eps: ``(1 - eps) L(m) + eps L(-m) = -log sigmoid(beta m)``.

``eps = 0`` gives DPO for both. Defaults: beta 0.1 (DPO's); eps 0.1 [U: neither paper fixes one for LLMs;
rDPO's experiments use the true flip rate, 0.1-0.4]. eps must be in [0, 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER_CDPO = "Mitchell 2023, 'A note on DPO with noisy preferences & relationship to IPO' (cDPO)"
PAPER_RDPO = "Chowdhury, Kini, Natarajan 2024, arXiv 2403.00409 (robust DPO)"


@dataclass(frozen=True)
class LabelNoiseParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    eps: float = param(0.1, "assumed probability that a pair's label is flipped, in [0, 0.5)", ge=0, lt=0.5)
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def cdpo_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float, eps: float) -> torch.Tensor:
    """Per-pair ``(1 - eps) * -log sigmoid(beta m) + eps * -log sigmoid(-beta m)``, m = h_w - h_l."""
    z = beta * (h_w - h_l)
    return -(1.0 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)


def robust_dpo_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float, eps: float) -> torch.Tensor:
    """Per-pair ``[(1 - eps) * -log sigmoid(beta m) - eps * -log sigmoid(-beta m)] / (1 - 2 eps)``."""
    z = beta * (h_w - h_l)
    return (-(1.0 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1.0 - 2.0 * eps)


def cdpo_objective(batch: LogProbBatch, params: LabelNoiseParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return cdpo_loss(h_w, h_l, beta=params.beta, eps=params.eps), pair_metrics(h_w, h_l, beta=params.beta)


def robust_objective(batch: LogProbBatch, params: LabelNoiseParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return robust_dpo_loss(h_w, h_l, beta=params.beta, eps=params.eps), pair_metrics(h_w, h_l, beta=params.beta)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``cdpo`` and ``robust-dpo``."""
    common = dict(family="preference", sampler=sampler, params=LabelNoiseParams, needs=frozenset({PREFERENCES}),
                  reference="initial")
    register(MethodSpec(name="cdpo", description="Conservative DPO: DPO with label smoothing eps (soft targets)",
                        paper=PAPER_CDPO, objective=cdpo_objective, **common))
    register(MethodSpec(name="robust-dpo", description="Robust DPO: unbiased DPO loss under labels flipped "
                        "with probability eps", paper=PAPER_RDPO, objective=robust_objective, **common))
