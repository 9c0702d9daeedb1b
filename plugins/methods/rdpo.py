"""R-DPO: DPO with a length regulariser, against preferring the longer response for its length.

Paper: Park, Rafailov, Ermon, Finn 2024, "Disentangling Length from Quality in Direct Preference
Optimization" (arXiv 2403.19159): a length penalty alpha |y| in the RLHF reward gives per pair
``-log sigmoid(beta h_w - beta h_l + alpha (|y_w| - |y_l|))`` with h = log pi(y|x) - log pi_ref(y|x)
summed over tokens and |y| in tokens (the form tabulated in the SimPO paper, arXiv 2405.14734, Table 3).
When the chosen response is the longer one the logit already starts higher, so the loss pushes less on
it: length alone earns no margin. ``alpha = 0`` is DPO.

Defaults: beta 0.1 (DPO's); alpha 0.05 [U: the paper tunes alpha per setup; 0.05 is the low end of the
grid the SimPO paper searched for R-DPO].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Park, Rafailov, Ermon, Finn 2024, arXiv 2403.19159 (R-DPO)"


@dataclass(frozen=True)
class RDPOParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    alpha: float = param(0.05, "length regulariser per token of length difference (0 = DPO)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def rdpo_loss(h_w: torch.Tensor, h_l: torch.Tensor, len_w: torch.Tensor, len_l: torch.Tensor, *, beta: float,
              alpha: float) -> torch.Tensor:
    """Per-pair ``-log sigmoid(beta (h_w - h_l) + alpha (|y_w| - |y_l|))``."""
    return -F.logsigmoid(beta * (h_w - h_l) + alpha * (len_w - len_l))


def objective(batch: LogProbBatch, params: RDPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    loss = rdpo_loss(h_w, h_l, batch.lengths("chosen"), batch.lengths("rejected"), beta=params.beta,
                     alpha=params.alpha)
    return loss, pair_metrics(h_w, h_l, beta=params.beta)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``rdpo``."""
    register(MethodSpec(
        name="rdpo", family="preference",
        description="R-DPO: DPO with a length regulariser alpha (|y_w| - |y_l|) inside the sigmoid",
        paper=PAPER, sampler=sampler, objective=objective, params=RDPOParams,
        needs=frozenset({PREFERENCES}), reference="initial",
    ))
