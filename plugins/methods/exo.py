"""EXO: efficient exact optimisation of the KL-regularised objective, pairwise form (reverse KL).

Paper: Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment" (arXiv
2402.00856), eq. 16 with K = 2 responses. With z = beta * (h_w - h_l), h = log pi(y|x) - log pi_ref(y|x)
summed over tokens, the model's pairwise distribution is p = (sigmoid(z), sigmoid(-z)) and the labels'
is q = (1 - eps, eps); EXO minimises the REVERSE KL(p || q):
``sigmoid(z) (log sigmoid(z) - log(1 - eps)) + sigmoid(-z) (log sigmoid(-z) - log eps)``,
where DPO minimises the forward cross-entropy -log sigmoid(z) (mode-covering). The loss is >= 0 and 0
exactly at sigmoid(z) = 1 - eps.

Defaults: beta 0.1; eps 1e-3 (TRL's ``exo_pair`` default when no label smoothing is set; the paper's
reward temperature beta_r plays the role of the soft label) [U].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Ji et al. 2024, arXiv 2402.00856 (EXO)"


@dataclass(frozen=True)
class EXOParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    eps: float = param(1e-3, "label smoothing of the target distribution (1 - eps, eps), in (0, 0.5)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def exo_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float, eps: float) -> torch.Tensor:
    """Per-pair KL((sigmoid(z), sigmoid(-z)) || (1 - eps, eps)), z = beta (h_w - h_l)."""
    z = beta * (h_w - h_l)
    return (torch.sigmoid(z) * (F.logsigmoid(z) - math.log(1.0 - eps))
            + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps)))


def objective(batch: LogProbBatch, params: EXOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return exo_loss(h_w, h_l, beta=params.beta, eps=params.eps), pair_metrics(h_w, h_l, beta=params.beta)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``exo``."""
    register(MethodSpec(
        name="exo", family="preference",
        description="EXO (pairwise): reverse KL between the model's pair distribution and (1 - eps, eps)",
        paper=PAPER, sampler=sampler, objective=objective, params=EXOParams,
        needs=frozenset({PREFERENCES}), reference="initial",
    ))
