"""CPO: contrastive preference optimisation, a reference-free DPO plus an NLL term on the chosen response.

Paper: Xu et al. 2024, "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance
in Machine Translation" (arXiv 2401.08417), eq. 3-6: ``L = L_prefer + L_NLL`` with
``L_prefer = -log sigmoid(beta * (log pi(y_w|x) - log pi(y_l|x)))`` (DPO with a uniform reference, which
drops out) and ``L_NLL = -log pi(y_w|x)``.

Defaults: beta 0.1 (the paper's); ``alpha`` (weight of the NLL term) 1, the paper's unweighted sum.
Unstated: whether the NLL is summed or averaged over tokens (TRL averages per token, ``cpo_alpha``); we
sum, like every sequence log-prob here, with ``nll_normalize="mean"`` for TRL's form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Xu et al. 2024, arXiv 2401.08417 (CPO)"


@dataclass(frozen=True)
class CPOParams:
    beta: float = param(0.1, "inverse temperature of the preference term (paper: 0.1)", gt=0)
    alpha: float = param(1.0, "weight of the NLL term on the chosen response (paper: 1)")
    nll_normalize: Literal["sum", "mean"] = param("sum", "NLL summed over tokens, or averaged (TRL)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def cpo_loss(pi_w: torch.Tensor, pi_l: torch.Tensor, nll_w: torch.Tensor, *, beta: float, alpha: float
             ) -> torch.Tensor:
    """Per-pair ``-log sigmoid(beta (pi_w - pi_l)) + alpha * nll_w`` (``nll_w`` = -log pi(y_w), maybe per token)."""
    return -F.logsigmoid(beta * (pi_w - pi_l)) + alpha * nll_w


def objective(batch: LogProbBatch, params: CPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    pw, pl = batch.logps["chosen"], batch.logps["rejected"]
    nll = -pw / batch.lengths("chosen").clamp(min=1) if params.nll_normalize == "mean" else -pw
    loss = cpo_loss(pw, pl, nll, beta=params.beta, alpha=params.alpha)
    return loss, {**pair_metrics(pw, pl, beta=params.beta), "nll_chosen": nll.mean().detach()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``cpo``."""
    register(MethodSpec(
        name="cpo", family="preference",
        description="CPO: reference-free DPO on log pi(y_w) - log pi(y_l) plus NLL on the chosen response",
        paper=PAPER, sampler=sampler, objective=objective, params=CPOParams,
        needs=frozenset({PREFERENCES}), reference="none",
    ))
