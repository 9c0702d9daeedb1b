"""DPOP (DPO-Positive): DPO plus a penalty whenever the chosen response falls below its reference likelihood.

Paper: Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive"
(arXiv 2402.13228), eq. 3: per pair
``-log sigmoid(beta * (h_w - h_l - lam * max(0, log pi_ref(y_w|x) - log pi(y_w|x))))`` with
h = log pi(y|x) - log pi_ref(y|x) summed over tokens. DPO can lower the chosen likelihood as long as the
rejected one falls faster; the penalty removes that: while pi(y_w) < pi_ref(y_w) the chosen response's
gradient is (1 + lam) times DPO's. It equals DPO while pi(y_w) >= pi_ref(y_w), and ``lam = 0`` is DPO.

Defaults: beta 0.1 (DPO's) [U: the paper's runs use beta 0.3 on MetaMath]; lam 50 (the paper's main
value; it also reports 5 and 500).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Pal et al. 2024, arXiv 2402.13228 (DPOP / Smaug)"


@dataclass(frozen=True)
class DPOPParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    lam: float = param(50.0, "weight of the penalty on pi(y_w) < pi_ref(y_w) (paper: 50)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def dpop_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float, lam: float) -> torch.Tensor:
    """Per-pair ``-log sigmoid(beta (h_w - h_l - lam * max(0, -h_w)))``."""
    return -F.logsigmoid(beta * (h_w - h_l - lam * torch.relu(-h_w)))


def objective(batch: LogProbBatch, params: DPOPParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    loss = dpop_loss(h_w, h_l, beta=params.beta, lam=params.lam)
    return loss, {**pair_metrics(h_w, h_l, beta=params.beta), "chosen_below_ref": (h_w < 0).float().mean()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``dpop``."""
    register(MethodSpec(
        name="dpop", family="preference",
        description="DPO-Positive: DPO with a penalty lam * max(0, log pi_ref(y_w) - log pi(y_w)) in the margin",
        paper=PAPER, sampler=sampler, objective=objective, params=DPOPParams,
        needs=frozenset({PREFERENCES}), reference="initial",
    ))
