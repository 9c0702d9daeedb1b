"""APO: anchored preference optimisation, ``apo-zero`` and ``apo-down`` (two methods, one file).

Paper: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions: Addressing
Underspecification in Alignment" (arXiv 2408.06266), eq. 7 and 8. With r = beta * h and
h = log pi(y|x) - log pi_ref(y|x) summed over tokens, per pair:

- ``apo-zero`` (chosen outputs better than the model's own): ``(1 - sigmoid(r_w)) + sigmoid(r_l)``; the
  chosen likelihood always rises and the rejected always falls, each anchored at zero reward.
- ``apo-down`` (chosen outputs worse than the model's own): ``sigmoid(r_w) + (1 - sigmoid(r_w - r_l))``;
  both likelihoods fall, the rejected one faster. At h_w = h_l = 0 the two terms' gradients on h_w cancel.

Defaults: beta 0.1 [U: the paper's value is not in our notes; TRL's default].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "D'Oosterlinck et al. 2024, arXiv 2408.06266 (APO)"


@dataclass(frozen=True)
class APOParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def apo_zero_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float) -> torch.Tensor:
    """Per-pair ``1 - sigmoid(beta h_w) + sigmoid(beta h_l)``."""
    return 1.0 - torch.sigmoid(beta * h_w) + torch.sigmoid(beta * h_l)


def apo_down_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float) -> torch.Tensor:
    """Per-pair ``sigmoid(beta h_w) + 1 - sigmoid(beta (h_w - h_l))``."""
    return torch.sigmoid(beta * h_w) + 1.0 - torch.sigmoid(beta * (h_w - h_l))


def zero_objective(batch: LogProbBatch, params: APOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return apo_zero_loss(h_w, h_l, beta=params.beta), pair_metrics(h_w, h_l, beta=params.beta)


def down_objective(batch: LogProbBatch, params: APOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return apo_down_loss(h_w, h_l, beta=params.beta), pair_metrics(h_w, h_l, beta=params.beta)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``apo-zero`` and ``apo-down``."""
    common = dict(family="preference", paper=PAPER, sampler=sampler, params=APOParams,
                  needs=frozenset({PREFERENCES}), reference="initial")
    register(MethodSpec(name="apo-zero", description="APO-zero: raise the chosen, lower the rejected likelihood, "
                        "each anchored at zero reward", objective=zero_objective, **common))
    register(MethodSpec(name="apo-down", description="APO-down: lower both likelihoods, the rejected faster "
                        "(chosen worse than the model's own outputs)", objective=down_objective, **common))
