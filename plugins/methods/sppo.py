"""SPPO: self-play preference optimisation, offline hard-label form (square loss on each log-ratio).

Paper: Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment" (arXiv
2405.00675), eq. 4.7: ``(log pi(y|x)/pi_t(y|x) - eta (P(y > pi_t | x) - 1/2))^2`` per response, where P is
the probability that y beats the current policy (the paper estimates it with PairRM over samples of
pi_t). With hard labels, P = 1 for the chosen and 0 for the rejected response (TRL's ``sppo_hard``):
``(h_w - eta/2)^2 + (h_l + eta/2)^2``, h = log pi(y|x) - log pi_ref(y|x) summed over tokens. Unlike
DPO/IPO it regresses each log-ratio separately, so the chosen likelihood must rise by eta/2 nats.

Choices: offline pairs and a frozen initial reference (one SPPO iteration; the paper iterates, re-sampling
from pi_t and resetting the reference each time). Default eta 10 (TRL's 1/beta with beta 0.1) [U: the
paper's eta differs by setup].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Wu et al. 2024, arXiv 2405.00675 (SPPO)"


@dataclass(frozen=True)
class SPPOParams:
    eta: float = param(10.0, "step size eta: the chosen log-ratio is pulled to eta/2, the rejected to -eta/2", gt=0)
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def sppo_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, eta: float) -> torch.Tensor:
    """Per-pair ``(h_w - eta/2)^2 + (h_l + eta/2)^2``."""
    return (h_w - eta / 2.0) ** 2 + (h_l + eta / 2.0) ** 2


def objective(batch: LogProbBatch, params: SPPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return sppo_loss(h_w, h_l, eta=params.eta), pair_metrics(h_w, h_l)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``sppo``."""
    register(MethodSpec(
        name="sppo", family="preference",
        description="SPPO (hard labels): square loss pulling h_w to eta/2 and h_l to -eta/2",
        paper=PAPER, sampler=sampler, objective=objective, params=SPPOParams,
        needs=frozenset({PREFERENCES}), reference="initial",
    ))
