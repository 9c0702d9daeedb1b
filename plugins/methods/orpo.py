"""ORPO: odds-ratio preference optimisation, SFT on the chosen response plus an odds-ratio penalty.

Paper: Hong, Lee, Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference Model"
(arXiv 2403.07691), eq. 6-7: ``L = L_SFT + lambda * L_OR`` with
``L_OR = -log sigmoid(log odds(y_w) - log odds(y_l))``, ``odds(y) = P(y|x) / (1 - P(y|x))`` and
``P(y|x) = exp(mean_t log pi(y_t|s_t))`` (the length-normalised likelihood, eq. 3); L_SFT is the
token-averaged NLL of the chosen response.

Defaults: lambda 0.1 (the paper's for its main runs; TRL's ``beta``). No reference model. Unstated:
log(1 - P) is computed as ``log(-expm1(log P))``, clamped to stay finite as P -> 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Hong, Lee, Thorne 2024, arXiv 2403.07691 (ORPO)"


@dataclass(frozen=True)
class ORPOParams:
    lam: float = param(0.1, "weight lambda of the odds-ratio term (paper: 0.1)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """``log(P / (1 - P))`` for ``log P`` = a mean token log-prob (<= 0)."""
    return mean_logp - torch.log(-torch.expm1(mean_logp.clamp(max=-1e-6)))


def orpo_loss(mean_w: torch.Tensor, mean_l: torch.Tensor, *, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair ``-mean_w + lam * -log sigmoid(log odds(y_w) - log odds(y_l))``; also the log odds ratio."""
    ratio = log_odds(mean_w) - log_odds(mean_l)
    return -mean_w - lam * F.logsigmoid(ratio), ratio


def objective(batch: LogProbBatch, params: ORPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    mean_w = batch.logps["chosen"] / batch.lengths("chosen").clamp(min=1)
    mean_l = batch.logps["rejected"] / batch.lengths("rejected").clamp(min=1)
    loss, ratio = orpo_loss(mean_w, mean_l, lam=params.lam)
    return loss, {**pair_metrics(mean_w, mean_l), "log_odds_ratio": ratio.mean().detach(),
                  "nll_chosen": (-mean_w).mean().detach()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``orpo``."""
    register(MethodSpec(
        name="orpo", family="preference",
        description="ORPO: token-mean SFT on the chosen response + lambda * odds-ratio loss, no reference model",
        paper=PAPER, sampler=sampler, objective=objective, params=ORPOParams,
        needs=frozenset({PREFERENCES}), reference="none",
    ))
