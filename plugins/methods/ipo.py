"""IPO: identity preference optimisation on offline preference pairs.

Paper: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
Preferences" (arXiv 2310.12036). Per pair, ``(h_w - h_l - 1/(2 tau))^2`` with
h = log pi(y|x) - log pi_ref(y|x) summed over response tokens: a squared loss that regresses the
log-ratio margin onto a finite target instead of pushing it to infinity as DPO can.

**Target.** The paper writes the target as 1/(2 tau); Tajwar et al.'s bandit code (arXiv 2404.14367)
writes ``(h_w - h_l - beta)^2`` with beta the target margin itself, 10. We expose ``tau`` and compute
target = 1/(2 tau); the default tau = 0.05 gives target 10, the bandit code's margin. The paper has no
LLM default [U]; TRL's IPO uses tau = beta = 0.1 (target 5) and averages log-probs over tokens, as the
IPO authors later recommended [U]; ``normalize="mean"`` gives that form.

Choices: the bandit's offline IPO also drops pairs whose reward gap is below 0.2; offline pairs carry
no rewards here, so there is no such filter (``online-ipo`` has ``min_gap``). Train defaults are the
trainer's, like ``dpo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from harness import PREFERENCES, LogProbBatch, MethodSpec, RoundContext, Row, hookimpl, param
from harness.samplers import offline_preferences

PAPER = "Azar et al. 2023, arXiv 2310.12036 (IPO); bandit form of Tajwar et al. 2024, arXiv 2404.14367"


@dataclass(frozen=True)
class IPOParams:
    tau: float = param(0.05, "regularisation tau; target margin 1/(2 tau) (0.05 -> 10, the bandit code's)", gt=0)
    normalize: Literal["sum", "mean"] = param("sum", "h summed over tokens, or averaged (TRL's IPO)")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def ipo_loss(
    pi_w: torch.Tensor, pi_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, *, tau: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair IPO loss ``((pi_w - ref_w) - (pi_l - ref_l) - 1/(2 tau))^2`` and its metrics."""
    margin = (pi_w - ref_w) - (pi_l - ref_l)
    loss = (margin - 1.0 / (2.0 * tau)) ** 2
    metrics = {"margin": margin.mean().detach(), "reward_accuracy": (margin > 0).float().mean().detach()}
    return loss, metrics


def preference_objective(batch: LogProbBatch, params: IPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IPO on a batch's chosen/rejected roles (shared with ``online-ipo``)."""
    if getattr(params, "normalize", "sum") == "mean":
        lw, ll = batch.lengths("chosen").clamp(min=1), batch.lengths("rejected").clamp(min=1)
    else:
        lw = ll = torch.ones_like(batch.logps["chosen"])
    return ipo_loss(
        batch.logps["chosen"] / lw, batch.logps["rejected"] / ll,
        batch.ref_logps["chosen"] / lw, batch.ref_logps["rejected"] / ll, tau=params.tau,
    )


def sampler(ctx: RoundContext) -> list[Row]:
    return offline_preferences(ctx, limit=ctx.params.limit)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``ipo``."""
    register(
        MethodSpec(
            name="ipo",
            family="preference",
            description="Identity preference optimisation on offline pairs: (h_w - h_l - 1/(2 tau))^2",
            paper=PAPER,
            sampler=sampler,
            objective=preference_objective,
            params=IPOParams,
            needs=frozenset({PREFERENCES}),
            reference="initial",
            real_train_defaults={"lr": 5e-7, "optimizer": "rmsprop"},  # as DPO (Rafailov et al.): RMSprop, 5e-7
        )
    )
