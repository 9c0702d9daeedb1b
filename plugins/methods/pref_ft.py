"""Pref-FT: supervised fine-tuning on the chosen responses of offline preference pairs.

Paper: the "Pref-FT" baseline of Tajwar et al. 2024 (arXiv 2404.14367; LLM code ``sft_yplus.py``):
maximum likelihood on y_w, ignoring y_l. Offline and without a negative gradient, it is the
reference point for the two axes of the paper (on-policy sampling, negative gradients).

Loss: :func:`alignment_harness_plugins.methods.sft.sft_loss` on the chosen response, summed over
tokens (``normalize="mean"`` divides by its length). No reference model. Defaults (lr, steps) are the
trainer's, like ``sft`` and ``dpo``, so the three offline methods compare at the same budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignment_harness_plugins.methods.sft import sft_loss
from harness import PREFERENCES, LogProbBatch, MethodSpec, RoundContext, Row, hookimpl, param
from harness.samplers import offline_preferences

PAPER = "Tajwar et al. 2024, arXiv 2404.14367 (Pref-FT baseline)"


@dataclass(frozen=True)
class PrefFTParams:
    normalize: Literal["sum", "mean"] = param("sum", "sum the token NLL per response, or average it")
    limit: int | None = param(None, "use at most this many pairs (None = all)")


def objective(batch: LogProbBatch, params: PrefFTParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    lengths = batch.lengths("chosen") if params.normalize == "mean" else None
    loss = sft_loss(batch.logps["chosen"], lengths)
    return loss, {"logp_chosen": batch.logps["chosen"].mean().detach()}


def sampler(ctx: RoundContext) -> list[Row]:
    """The benchmark's pairs reduced to their chosen responses: rows ``{"chosen"}``."""
    return [Row({"chosen": r.seqs["chosen"]}) for r in offline_preferences(ctx, limit=ctx.params.limit)]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``pref-ft``."""
    register(
        MethodSpec(
            name="pref-ft",
            family="supervised",
            description="Pref-FT: supervised fine-tuning on the chosen responses of preference pairs",
            paper=PAPER,
            sampler=sampler,
            objective=objective,
            params=PrefFTParams,
            needs=frozenset({PREFERENCES}),
            reference="none",
            real_train_defaults={"lr": 2e-5},  # as SFT of chat models (Zephyr / alignment-handbook): 2e-5
        )
    )
