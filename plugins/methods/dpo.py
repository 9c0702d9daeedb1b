"""DPO: direct preference optimisation on offline preference pairs.

Paper: Rafailov et al. 2023 (arXiv 2305.18290). Loss -log sigmoid(beta * (h_w - h_l)) with
h = log pi(y|x) - log pi_ref(y|x) summed over response tokens; the reference is a frozen copy of the
starting policy. Default beta 0.1 (the paper's LLM setting; Tajwar et al.'s bandit uses 0.05).

Choices: no label smoothing; the loss is computed with ``logsigmoid`` so huge margins stay finite.
The reported ``reward_accuracy`` is the fraction of pairs with h_w > h_l.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param
from harness.samplers import offline_preferences


@dataclass(frozen=True)
class DPOParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward (KL strength)", gt=0)
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def dpo_loss(
    pi_w: torch.Tensor, pi_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, *, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair DPO loss -log sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l))) and its metrics."""
    margin = (pi_w - ref_w) - (pi_l - ref_l)
    loss = -F.logsigmoid(beta * margin)
    metrics = {
        "margin": margin.mean().detach(),
        "reward_accuracy": (margin > 0).float().mean().detach(),
        "reward_chosen": (beta * (pi_w - ref_w)).mean().detach(),
        "reward_rejected": (beta * (pi_l - ref_l)).mean().detach(),
    }
    return loss, metrics


def pair_metrics(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """The metrics every pairwise loss reports: mean margin h_w - h_l, the fraction of pairs it ranks right,
    and the mean implicit rewards beta * h (shared by the DPO-variant plugins)."""
    margin = (h_w - h_l).detach()
    return {
        "margin": margin.mean(),
        "reward_accuracy": (margin > 0).float().mean(),
        "reward_chosen": (beta * h_w).detach().mean(),
        "reward_rejected": (beta * h_l).detach().mean(),
    }


def objective(batch: LogProbBatch, params: DPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return dpo_loss(
        batch.logps["chosen"],
        batch.logps["rejected"],
        batch.ref_logps["chosen"],
        batch.ref_logps["rejected"],
        beta=params.beta,
    )


def sampler(ctx):  # noqa: ANN001, ANN201 - a sampler, see harness.training.samplers
    return offline_preferences(ctx, limit=ctx.params.limit)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``dpo``."""
    register(
        MethodSpec(
            name="dpo",
            family="preference",
            description="Direct preference optimisation on offline preference pairs",
            paper="Rafailov et al. 2023, arXiv 2305.18290",
            sampler=sampler,
            objective=objective,
            params=DPOParams,
            needs=frozenset({PREFERENCES}),
            reference="initial",
            real_train_defaults={"lr": 5e-7, "optimizer": "rmsprop"},  # Rafailov et al.: RMSprop, 5e-7 .. 1e-6
        )
    )
