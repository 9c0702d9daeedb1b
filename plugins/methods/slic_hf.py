"""SLiC-HF: sequence likelihood calibration with a rank (hinge) loss and a regulariser toward the SFT target.

Paper: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback" (arXiv
2305.10425), eq. 2: ``max(0, delta - log pi(y_w|x) + log pi(y_l|x)) - lam * log pi(y_ref|x)``, log-probs
summed over tokens, no reference model in the rank term. The regulariser is the NLL of the SFT target
y_ref; on a preference dataset we take the chosen response as y_ref (the paper's "SLiC-HF with the
positive as target" option) [choice].

Defaults: delta 1.0 (the paper's margin) and lam 0.5 [U: the paper's regularisation weight is not
restated in our notes]. The hinge has zero gradient once the margin reaches delta. (TRL's ``hinge`` loss
type is the variant with reference log-ratios, ``relu(1 - beta m)``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Zhao et al. 2023, arXiv 2305.10425 (SLiC-HF)"


@dataclass(frozen=True)
class SLiCParams:
    delta: float = param(1.0, "rank margin on log pi(y_w) - log pi(y_l) (paper: 1.0)")
    lam: float = param(0.5, "weight of the NLL of the chosen response (the SFT target)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def slic_loss(pi_w: torch.Tensor, pi_l: torch.Tensor, *, delta: float, lam: float) -> torch.Tensor:
    """Per-pair ``max(0, delta - pi_w + pi_l) - lam * pi_w``."""
    return torch.relu(delta - pi_w + pi_l) - lam * pi_w


def objective(batch: LogProbBatch, params: SLiCParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    pw, pl = batch.logps["chosen"], batch.logps["rejected"]
    loss = slic_loss(pw, pl, delta=params.delta, lam=params.lam)
    return loss, {**pair_metrics(pw, pl), "hinge_active": ((pw - pl) < params.delta).float().mean()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``slic-hf``."""
    register(MethodSpec(
        name="slic-hf", family="preference",
        description="SLiC-HF: hinge max(0, delta - log pi(y_w) + log pi(y_l)) + lam * NLL of the chosen response",
        paper=PAPER, sampler=sampler, objective=objective, params=SLiCParams,
        needs=frozenset({PREFERENCES}), reference="none",
    ))
