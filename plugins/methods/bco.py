"""BCO: binary classifier optimisation, pairwise form: each response classified against a reward shift.

Paper: Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment" (arXiv
2404.04656): with r = beta * h, h = log pi(y|x) - log pi_ref(y|x) summed over tokens, the chosen response
is a positive and the rejected one a negative of a logistic classifier with logit r - delta:
``-log sigmoid(r_w - delta) - log sigmoid(-(r_l - delta))``. The shift delta is the mean reward, which
the paper (and TRL's ``bco_pair``) tracks as a running mean over training.

Choice: the objective stays a pure function of the batch, so ``delta = None`` (default) takes the mean of
the batch's rewards r_w and r_l (detached), one batch of the running mean; a number fixes delta. (The
paper's unpaired BCO also reweights by a density-ratio classifier between the two prompt sets; with
paired data the prompts coincide and that weight is 1.) Defaults: beta 0.1 [U: TRL's].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Jung et al. 2024, arXiv 2404.04656 (BCO)"


@dataclass(frozen=True)
class BCOParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    delta: float | None = param(None, "reward shift of the classifier (None: the batch's mean reward)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def bco_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float, delta: float | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair ``-log sigmoid(beta h_w - delta) - log sigmoid(delta - beta h_l)``, and the delta used."""
    r_w, r_l = beta * h_w, beta * h_l
    d = torch.cat([r_w, r_l]).mean().detach() if delta is None else torch.tensor(float(delta))
    return -F.logsigmoid(r_w - d) - F.logsigmoid(d - r_l), d


def objective(batch: LogProbBatch, params: BCOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    loss, delta = bco_loss(h_w, h_l, beta=params.beta, delta=params.delta)
    return loss, {**pair_metrics(h_w, h_l, beta=params.beta), "delta": delta}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``bco``."""
    register(MethodSpec(
        name="bco", family="preference",
        description="BCO (pairwise): logistic classifier on rewards shifted by their mean, chosen = 1, rejected = 0",
        paper=PAPER, sampler=sampler, objective=objective, params=BCOParams,
        needs=frozenset({PREFERENCES}), reference="initial",
    ))
