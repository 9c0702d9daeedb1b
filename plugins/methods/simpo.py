"""SimPO: simple preference optimisation, a reference-free reward with a target margin.

Paper: Meng, Xia, Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward"
(arXiv 2405.14734), eq. 6. The implicit reward is the length-normalised log-probability
``r(y) = beta / |y| * log pi(y|x)``; per pair ``-log sigmoid(r(y_w) - r(y_l) - gamma)``.

Defaults: beta 2.0 (the paper's range is 2.0-2.5); gamma 1.0, i.e. gamma/beta = 0.5, the ratio the paper
recommends (its tuned gamma ranges 0.3-1.6 by setup) [TRL's CPO trainer uses gamma 0.5 with beta 2]. No
reference model. Unstated: an empty response would divide by zero; its length is clamped to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Meng, Xia, Chen 2024, arXiv 2405.14734 (SimPO)"


@dataclass(frozen=True)
class SimPOParams:
    beta: float = param(2.0, "scale of the length-normalised log-prob reward (paper: 2.0-2.5)", gt=0)
    gamma: float = param(1.0, "target reward margin (paper: gamma/beta about 0.5)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def simpo_loss(pi_w: torch.Tensor, len_w: torch.Tensor, pi_l: torch.Tensor, len_l: torch.Tensor, *, beta: float,
               gamma: float) -> torch.Tensor:
    """Per-pair ``-log sigmoid(beta * pi_w/|y_w| - beta * pi_l/|y_l| - gamma)``."""
    return -F.logsigmoid(beta * pi_w / len_w.clamp(min=1) - beta * pi_l / len_l.clamp(min=1) - gamma)


def objective(batch: LogProbBatch, params: SimPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    lw, ll = batch.lengths("chosen"), batch.lengths("rejected")
    pw, pl = batch.logps["chosen"], batch.logps["rejected"]
    loss = simpo_loss(pw, lw, pl, ll, beta=params.beta, gamma=params.gamma)
    return loss, pair_metrics(pw / lw.clamp(min=1), pl / ll.clamp(min=1), beta=params.beta)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``simpo``."""
    register(MethodSpec(
        name="simpo", family="preference",
        description="SimPO: length-normalised log-prob margin with a target gamma, no reference model",
        paper=PAPER, sampler=sampler, objective=objective, params=SimPOParams,
        needs=frozenset({PREFERENCES}), reference="none",
    ))
