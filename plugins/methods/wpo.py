"""WPO: weighted preference optimisation, DPO reweighted by how likely the pair is under the current policy.

Paper: Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization" (arXiv 2406.11827),
eq. 2: off-policy pairs are weighted by their probability under the policy, made comparable across
tokens by normalising each token's probability by sum_v pi(v|s_t)^2 (the probability of the policy's
own sampled token). Per response ``w(y) = exp(mean_t [log pi(y_t|s_t) - log sum_v pi(v|s_t)^2])``, the
pair's weight ``min(1, w(y_w) w(y_l))`` (no gradient), and the loss ``weight * DPO``.

Defaults: beta 0.1 (DPO's). The weight needs every position's full distribution, so the method asks for
the logits (``needs_hidden``). Choice: the clamp at 1 follows TRL's ``use_weighting``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment_harness_plugins.methods.dpo import dpo_loss, sampler
from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param
from harness.lm import masked_mean

PAPER = "Zhou et al. 2024, arXiv 2406.11827 (WPO)"


@dataclass(frozen=True)
class WPOParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward", gt=0)
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def wpo_log_weight(token_logps: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean over response tokens of ``log pi(y_t) - log sum_v pi(v)^2`` (detached)."""
    logp = torch.log_softmax(logits.detach().float(), -1)
    return masked_mean(token_logps.detach() - torch.logsumexp(2.0 * logp, -1), mask)


def wpo_loss(dpo: torch.Tensor, log_w_chosen: torch.Tensor, log_w_rejected: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair ``min(1, exp(log_w_chosen + log_w_rejected)) * dpo``, and the weights."""
    weight = torch.exp(log_w_chosen + log_w_rejected).clamp(max=1.0).detach()
    return weight * dpo, weight


def objective(batch: LogProbBatch, params: WPOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    dpo, metrics = dpo_loss(batch.logps["chosen"], batch.logps["rejected"], batch.ref_logps["chosen"],
                            batch.ref_logps["rejected"], beta=params.beta)
    tw, tl = batch.tokens["chosen"], batch.tokens["rejected"]
    loss, weight = wpo_loss(dpo, wpo_log_weight(tw.token_logps, tw.logits, tw.mask),
                            wpo_log_weight(tl.token_logps, tl.logits, tl.mask))
    return loss, {**metrics, "weight": weight.mean()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``wpo``."""
    register(MethodSpec(
        name="wpo", family="preference",
        description="WPO: DPO weighted by the pair's (token-normalised) probability under the current policy",
        paper=PAPER, sampler=sampler, objective=objective, params=WPOParams,
        needs=frozenset({PREFERENCES}), reference="initial", needs_hidden=True,
    ))
