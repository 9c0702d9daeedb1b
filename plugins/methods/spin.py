"""SPIN: self-play fine-tuning, DPO's loss on (demonstration, self-generated sample) pairs.

Paper: Chen, Deng, Yuan, Ji, Gu, "Self-Play Fine-Tuning Converts Weak Language Models to Strong
Language Models" (ICML 2024, arXiv 2401.01335); code github.com/uclaml/SPIN.

**The method.** Each iteration the previous iterate pi_t (the "opponent") answers every demonstration
prompt; the new policy is trained to tell the human response y_w from the opponent's y_g with the
logistic loss -log sigmoid(beta * (h(y_w) - h(y_g))), h = log pi_theta - log pi_t summed over response
tokens. That is DPO's loss on the pair (chosen = demonstration, rejected = self-generated), with the
reference reset to the latest policy at the start of every round (``reference="round"``); the loss
calls :func:`~alignment_harness_plugins.methods.dpo.dpo_loss` itself (tested equal). beta 0.1 [C].

**Choices where the paper differs or is silent.**

- One sample per prompt, greedy by default (the paper's generation script samples; GSIL, which copies
  SPIN's pipeline, decodes greedily). ``temperature`` and ``n`` are parameters.
- By default each round trains on that round's generations only; ``history=1`` follows the released
  configs, training iteration t on the union of iterations t-1's and t's pairs (``history=k``: the k
  previous rounds). The reference is the previous iterate either way.
- ``max_new_tokens=None`` generates as many tokens as the longest demonstration response.
- Train defaults (3 rounds x 20 steps, lr 1e-3, AdamW) are ours for the tiny didactic runs; the paper
  runs iterations 0..3 with lr 5e-7, RMSprop, 2-3 epochs per iteration on a 7B model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignment_harness_plugins.methods.dpo import dpo_loss

# SPIN samples exactly as GSIL does: n answers of the previous iterate (the round's reference) per demo.
from alignment_harness_plugins.methods.gsil import sampler
from harness import DEMONSTRATIONS, LogProbBatch, MethodSpec, RoundContext, Row, hookimpl, param

PAPER = "Chen et al. 2024, arXiv 2401.01335 (SPIN, ICML 2024); code github.com/uclaml/SPIN"


@dataclass(frozen=True)
class SPINParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward (paper: 0.1)", gt=0)
    n: int = param(1, "self-generated samples per demonstration prompt")
    temperature: float = param(0.0, "sampling temperature of the opponent's samples (0 = greedy)")
    max_new_tokens: int | None = param(None, "generated length (None: the longest demonstration response)")
    limit: int | None = param(None, "use at most this many demonstrations per round (None = all)")
    history: int = param(0, "also train on the pairs of this many previous rounds (released configs: 1)")


def spin_sampler(ctx: RoundContext) -> list[Row]:
    """This round's (demonstration, self-generated) pairs, plus those of the ``history`` previous rounds."""
    rows = sampler(ctx)
    if ctx.params.history <= 0:
        return rows
    past = ctx.state.setdefault("spin/past", [])  # kept across rounds and checkpoints
    out = rows + [r for earlier in past[-ctx.params.history:] for r in earlier]
    past.append(rows)
    del past[: -ctx.params.history]
    return out


def spin_loss(
    pi_real: torch.Tensor, pi_gen: torch.Tensor, ref_real: torch.Tensor, ref_gen: torch.Tensor, *, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-log sigmoid(beta * ((pi_real - ref_real) - (pi_gen - ref_gen))): DPO with chosen = demonstration."""
    return dpo_loss(pi_real, pi_gen, ref_real, ref_gen, beta=beta)


def objective(batch: LogProbBatch, params: SPINParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return spin_loss(
        batch.logps["real"],
        batch.logps["generated"],
        batch.ref_logps["real"],
        batch.ref_logps["generated"],
        beta=params.beta,
    )


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``spin``."""
    register(
        MethodSpec(
            name="spin",
            family="imitation",
            description="Self-play fine-tuning: DPO loss on (demonstration, previous iterate's sample) pairs",
            paper=PAPER,
            sampler=spin_sampler,
            objective=objective,
            params=SPINParams,
            needs=frozenset({DEMONSTRATIONS}),
            reference="round",
            train_defaults={"rounds": 3, "steps": 20, "lr": 1e-3},
            # SPIN: beta 0.1, lr 5e-7, RMSprop, linear, warmup 0.1
            real_train_defaults={"lr": 5e-7, "optimizer": "rmsprop"},
        )
    )
