"""GSIL: generalized self-imitation learning, density-ratio estimation against self-generated samples.

Paper: Xiao, Li, Yuan, Zhu, Cui, Honavar, "Aligning Large Language Models via Self-Imitation
Learning" (EMNLP 2024, arXiv 2410.10093); code github.com/tengxiao1/GSIL (``GSILTrainer.gsil_loss``).

**The method.** Imitating demonstrations with a reverse KL needs the density ratio
pi_data / pi_theta. GSIL estimates it by classifying demonstrations ("real", label +1) against samples
of the current iterate ("generated", label -1), with the log-ratio parameterised through the policy:
z = beta * h + b, h = log pi_theta(y|x) - log pi_t(y|x) summed over response tokens, pi_t the
previous iterate (the round's reference). The loss is the UNPAIRED sum of a term on each real row and
a term on each generated row (SPIN/DPO instead put the pairwise difference inside one sigmoid):

======== ======================= ===================== =========================================
loss     on real (z_r)           on generated (z_g)    note
======== ======================= ===================== =========================================
logistic -log sigmoid(z_r)       -log sigmoid(-z_g)    the code's "Bernoulli"
hinge    max(0, 1 - z_r)         max(0, 1 + z_g)
brier    (sigmoid(z_r) - 1)^2    sigmoid(z_g)^2
kliep    -z_r                    exp(z_g)              unnormalised KL / exponential loss
lsif     -exp(z_r)               exp(z_g)^2 / 2        least-squares importance fitting
spin     -log sigmoid(beta * (h_r - h_g))              pairwise; equals SPIN / DPO (no shift)
======== ======================= ===================== =========================================

**Naming.** The released code writes z = alpha * h + beta: its ``alpha`` is the SCALE (the paper's
beta) and its ``beta`` the additive SHIFT. Ours: ``beta`` = scale (the paper's and DPO's meaning),
``shift`` = b. The released script runs ``--alpha 0.01 --beta 2`` (our ``beta=0.01, shift=2``) with a
loss name the code does not handle ("bernoulli_scale_shift"; presumably logistic). The code's "spin"
branch multiplies by its ``beta`` (elsewhere the shift); ours multiplies by the scale ``beta``, so
``loss=spin`` is exactly SPIN/DPO at the same beta (tested).

**Sampling [C].** One greedy sample per demonstration prompt from the round's reference, regenerated
every round; ``reference="round"`` resets the reference to the latest policy at each round's start,
so round k imitates against the iterate of round k-1. ``n`` and ``temperature`` are configurable.

**Choices where the paper/code is silent.**

- Defaults ``beta=0.1, shift=0``: the paper's form z = beta*h (b = 0) with the code's config default
  scale 0.1 (= SPIN's beta). The paper's own value is not recovered; the script's is reachable with
  ``--set beta=0.01 --set shift=2``.
- ``max_new_tokens=None`` generates as many tokens as the longest demonstration response (on the
  didactic bandit: 1 or 9, the demonstrations' length); the code uses 256.
- One method with a ``loss`` parameter rather than six registered names: every variant shares the
  sampler and data needs, and sweeps vary ``loss`` like any parameter.
- Train defaults (3 rounds x 20 steps, lr 1e-3, AdamW) are ours, sized for the tiny didactic runs; the
  paper uses 1 epoch per iteration, lr 5e-7, RMSprop, batch 128 on a 7B model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from alignment_harness_plugins.methods.dpo import dpo_loss
from harness import DEMONSTRATIONS, LogProbBatch, MethodSpec, RoundContext, Row, hookimpl, param
from harness.pg import response_length
from harness.samplers import self_generated

PAPER = "Xiao et al. 2024, arXiv 2410.10093 (GSIL, EMNLP 2024); code github.com/tengxiao1/GSIL"
Loss = Literal["logistic", "hinge", "brier", "kliep", "lsif", "spin"]
Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GSILParams:
    loss: Loss = param("logistic", "logistic | hinge | brier | kliep | lsif | spin (pairwise)")
    beta: float = param(0.1, "scale of z = beta*h + shift (the code's alpha; script: 0.01)", gt=0)
    shift: float = param(0.0, "shift b of z = beta*h + b (the code's beta; script: 2); unused by 'spin'")
    n: int = param(1, "self-generated samples per demonstration prompt")
    temperature: float = param(0.0, "sampling temperature of the self-generated samples (0 = greedy)")
    max_new_tokens: int | None = param(None, "generated length (None: the longest demonstration response)")
    limit: int | None = param(None, "use at most this many demonstrations per round (None = all)")


# -- the losses: pure functions of the summed log-ratios h_real, h_gen ([B] each) ------------------------


def _metrics(h_real: torch.Tensor, h_gen: torch.Tensor, loss_real: torch.Tensor, loss_gen: torch.Tensor
             ) -> Metrics:
    return {
        "h_real": h_real.mean().detach(),
        "h_generated": h_gen.mean().detach(),
        "margin": (h_real - h_gen).mean().detach(),
        "accuracy": (h_real > h_gen).float().mean().detach(),
        "loss_real": loss_real.mean().detach(),
        "loss_generated": loss_gen.mean().detach(),
    }


def _unpaired(
    h_real: torch.Tensor, h_gen: torch.Tensor, on_real: Callable, on_gen: Callable, beta: float, shift: float
) -> tuple[torch.Tensor, Metrics]:
    loss_real, loss_gen = on_real(beta * h_real + shift), on_gen(beta * h_gen + shift)
    return loss_real + loss_gen, _metrics(h_real, h_gen, loss_real, loss_gen)


def logistic_loss(
    h_real: torch.Tensor, h_gen: torch.Tensor, *, beta: float, shift: float = 0.0
) -> tuple[torch.Tensor, Metrics]:
    """-log sigmoid(z_r) - log sigmoid(-z_g) (the code's "Bernoulli"); per-row loss and metrics."""
    return _unpaired(h_real, h_gen, lambda z: -F.logsigmoid(z), lambda z: -F.logsigmoid(-z), beta, shift)


def hinge_loss(
    h_real: torch.Tensor, h_gen: torch.Tensor, *, beta: float, shift: float = 0.0
) -> tuple[torch.Tensor, Metrics]:
    """max(0, 1 - z_r) + max(0, 1 + z_g)."""
    return _unpaired(h_real, h_gen, lambda z: F.relu(1 - z), lambda z: F.relu(1 + z), beta, shift)


def brier_loss(
    h_real: torch.Tensor, h_gen: torch.Tensor, *, beta: float, shift: float = 0.0
) -> tuple[torch.Tensor, Metrics]:
    """(sigmoid(z_r) - 1)^2 + sigmoid(z_g)^2."""
    return _unpaired(
        h_real, h_gen, lambda z: (torch.sigmoid(z) - 1) ** 2, lambda z: torch.sigmoid(z) ** 2, beta, shift
    )


def kliep_loss(
    h_real: torch.Tensor, h_gen: torch.Tensor, *, beta: float, shift: float = 0.0
) -> tuple[torch.Tensor, Metrics]:
    """-z_r + exp(z_g) (KLIEP, the exponential / unnormalised-KL Bregman loss)."""
    return _unpaired(h_real, h_gen, lambda z: -z, torch.exp, beta, shift)


def lsif_loss(
    h_real: torch.Tensor, h_gen: torch.Tensor, *, beta: float, shift: float = 0.0
) -> tuple[torch.Tensor, Metrics]:
    """-exp(z_r) + exp(z_g)^2 / 2 (least-squares importance fitting)."""
    return _unpaired(h_real, h_gen, lambda z: -torch.exp(z), lambda z: 0.5 * torch.exp(2 * z), beta, shift)


LOSSES: dict[str, Callable] = {
    "logistic": logistic_loss,
    "hinge": hinge_loss,
    "brier": brier_loss,
    "kliep": kliep_loss,
    "lsif": lsif_loss,
}


def gsil_loss(
    pi_real: torch.Tensor,
    pi_gen: torch.Tensor,
    ref_real: torch.Tensor,
    ref_gen: torch.Tensor,
    *,
    loss: str = "logistic",
    beta: float = 0.1,
    shift: float = 0.0,
) -> tuple[torch.Tensor, Metrics]:
    """Per-row GSIL loss from summed log-probs of the policy and the previous iterate (reference)."""
    h_real, h_gen = pi_real - ref_real, pi_gen - ref_gen
    if loss == "spin":
        out, metrics = dpo_loss(pi_real, pi_gen, ref_real, ref_gen, beta=beta)
        return out, {**_metrics(h_real, h_gen, out, torch.zeros_like(out)), **metrics}
    if loss not in LOSSES:
        raise ValueError(f"unknown GSIL loss {loss!r}; use one of {[*LOSSES, 'spin']}")
    return LOSSES[loss](h_real, h_gen, beta=beta, shift=shift)


def objective(batch: LogProbBatch, params: GSILParams) -> tuple[torch.Tensor, Metrics]:
    return gsil_loss(
        batch.logps["real"],
        batch.logps["generated"],
        batch.ref_logps["real"],
        batch.ref_logps["generated"],
        loss=params.loss,
        beta=params.beta,
        shift=params.shift,
    )


def sampler(ctx: RoundContext) -> list[Row]:
    """Each demonstration with ``n`` samples of the round's reference (the previous iterate)."""
    p = ctx.params
    generation = {"temperature": p.temperature, "max_new_tokens": response_length(ctx, p.max_new_tokens)}
    return self_generated(ctx, source="reference", n=p.n, limit=p.limit, generation=generation)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``gsil``."""
    register(
        MethodSpec(
            name="gsil",
            family="imitation",
            description="Self-imitation: demonstrations vs the previous iterate's samples, unpaired "
            "density-ratio loss (logistic, hinge, brier, kliep, lsif; 'spin' = pairwise)",
            paper=PAPER,
            sampler=sampler,
            objective=objective,
            params=GSILParams,
            needs=frozenset({DEMONSTRATIONS}),
            reference="round",
            train_defaults={"rounds": 3, "steps": 20, "lr": 1e-3},
            # GSIL scripts: lr 5e-7, RMSprop, linear, warmup 0.1
            real_train_defaults={"lr": 5e-7, "optimizer": "rmsprop"},
        )
    )
