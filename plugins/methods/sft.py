"""SFT: supervised fine-tuning on demonstrations, i.e. maximum likelihood (forward KL).

Paper: seen as inverse RL by Sun 2024 (arXiv 2403.12017): minimising KL(d_demo || d_pi) over
trajectories is exactly the token-level negative log-likelihood of the demonstrations, a
mass-covering objective.

Choices: the loss is the negative log-likelihood SUMMED over response tokens (the trajectory
log-probability of 2403.12017), averaged over rows; ``normalize="mean"`` divides by response length
instead (the usual token-averaged LM loss). No reference model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from harness import DEMONSTRATIONS, LogProbBatch, MethodSpec, hookimpl, param
from harness.samplers import offline_demonstrations


@dataclass(frozen=True)
class SFTParams:
    normalize: Literal["sum", "mean"] = param("sum", "sum the token NLL per response, or average it")
    limit: int | None = param(None, "use at most this many demonstrations (None = all)")


def sft_loss(logps: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row negative log-likelihood; with ``lengths`` it is divided by the response length."""
    nll = -logps
    return nll / lengths.clamp(min=1) if lengths is not None else nll


def objective(batch: LogProbBatch, params: SFTParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    lengths = batch.lengths("demo") if params.normalize == "mean" else None
    loss = sft_loss(batch.logps["demo"], lengths)
    return loss, {"logp_demo": batch.logps["demo"].mean().detach()}


def sampler(ctx):  # noqa: ANN001, ANN201 - a sampler, see harness.training.samplers
    return offline_demonstrations(ctx, limit=ctx.params.limit)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``sft``."""
    register(
        MethodSpec(
            name="sft",
            family="supervised",
            description="Supervised fine-tuning on demonstrations (maximum likelihood, forward KL)",
            paper="Sun 2024, arXiv 2403.12017 (SFT as IRL)",
            sampler=sampler,
            objective=objective,
            params=SFTParams,
            needs=frozenset({DEMONSTRATIONS}),
            reference="none",
            real_train_defaults={"lr": 2e-5},  # SFT of chat models (Zephyr / alignment-handbook): 2e-5
        )
    )
