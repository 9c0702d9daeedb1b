"""DiscoPOP: the log-ratio modulated loss found by LLM-driven objective discovery.

Paper: Chris Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for Large Language
Models" (arXiv 2406.08414), eq. 5. With z = beta * (h_w - h_l), h = log pi(y|x) - log pi_ref(y|x)
summed over tokens, per pair ``(1 - sigmoid(z / tau)) * -log sigmoid(z) + sigmoid(z / tau) * exp(-z)``:
a blend of DPO's logistic loss and an exponential loss, switched by the margin's sign (logistic for
negative margins, exponential for positive ones). As tau -> 0 it is DPO for z < 0.

The blend is not convex (the paper notes its non-convexity): at z = 0, where every pair starts when the
policy is the reference, ``dL/dz = (1 - log 2) / (4 tau) - 3/4`` (+0.78 at tau 0.05) pushes the margin
NEGATIVE, into a local minimum near z = -0.12 (a margin of -2.4 nats at beta 0.05), behind a small bump
near z = +0.07; the loss only falls below its value at 0 for larger positive margins. Where training
starts at the reference with small steps (the didactic bandit), pairs settle in that local minimum and
the rejected response ends preferred (FINDINGS.md, section 12).

Defaults: beta 0.05 and tau 0.05 (the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import pair_metrics, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param

PAPER = "Lu et al. 2024, arXiv 2406.08414 (DiscoPOP)"


@dataclass(frozen=True)
class DiscoPOPParams:
    beta: float = param(0.05, "inverse temperature of the implicit reward (paper: 0.05)", gt=0)
    tau: float = param(0.05, "temperature of the blend between the two losses (paper: 0.05)", gt=0)
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def discopop_loss(h_w: torch.Tensor, h_l: torch.Tensor, *, beta: float, tau: float) -> torch.Tensor:
    """Per-pair ``(1 - sigmoid(z/tau)) (-log sigmoid(z)) + sigmoid(z/tau) exp(-z)``, z = beta (h_w - h_l)."""
    z = beta * (h_w - h_l)
    mix = torch.sigmoid(z / tau)
    return (1.0 - mix) * -F.logsigmoid(z) + mix * torch.exp(-z)


def objective(batch: LogProbBatch, params: DiscoPOPParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    h_w, h_l = batch.log_ratio("chosen"), batch.log_ratio("rejected")
    return discopop_loss(h_w, h_l, beta=params.beta, tau=params.tau), pair_metrics(h_w, h_l, beta=params.beta)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``discopop``."""
    register(MethodSpec(
        name="discopop", family="preference",
        description="DiscoPOP: logistic/exponential loss blend modulated by the log-ratio margin",
        paper=PAPER, sampler=sampler, objective=objective, params=DiscoPOPParams,
        needs=frozenset({PREFERENCES}), reference="initial",
    ))
