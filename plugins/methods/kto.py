"""KTO: Kahneman-Tversky optimisation on unpaired feedback (each response labelled desirable or not).

Paper: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization" (arXiv
2402.01306), eq. 8. With r(x, y) = log pi(y|x) - log pi_ref(y|x) summed over tokens and the reference
point ``z0 = max(0, KL(pi(y'|x) || pi_ref(y'|x)))`` (no gradient), per response:

- desirable:   ``lambda_D * (1 - sigmoid(beta (r - z0)))``
- undesirable: ``lambda_U * (1 - sigmoid(beta (z0 - r)))``

**z0.** The paper estimates the KL on mismatched pairs: the completion of another row of the same batch
under this row's prompt; here the sampler pairs row i's prompt with row i+1's completion (role ``kl``)
and the objective takes ``max(0, mean over the batch of log pi(y'|x) - log pi_ref(y'|x))``, detached
(as TRL does per micro-batch). ``z0`` can be fixed instead (``kl_estimate = false``: z0 = 0, the
"KTO with z0 = 0" ablation), which also skips the extra forward pass.

**Data.** Unpaired feedback (the ``prompt`` / ``completion`` / ``label`` format of a dataset), or
preference pairs unpaired: each pair gives its chosen response as desirable and its rejected one as
undesirable (what TRL's ``unpair_preference_dataset`` does). Rows carry ``desirable`` = 1 or 0.

Defaults: beta 0.1 and lambda_D = lambda_U = 1 (the paper's defaults for balanced data; it recommends
``lambda_D n_D / (lambda_U n_U)`` in [1, 4/3]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import FEEDBACK, LogProbBatch, MethodSpec, RoundContext, Row, Sequence, hookimpl, param

PAPER = "Ethayarajh et al. 2024, arXiv 2402.01306 (KTO)"


@dataclass(frozen=True)
class KTOParams:
    beta: float = param(0.1, "inverse temperature of the implicit reward (paper: 0.1)", gt=0)
    desirable_weight: float = param(1.0, "lambda_D, weight of desirable responses")
    undesirable_weight: float = param(1.0, "lambda_U, weight of undesirable responses")
    kl_estimate: bool = param(True, "estimate the reference point z0 on mismatched pairs (false: z0 = 0)")
    limit: int | None = param(None, "use at most this many feedback rows (None = all)")


def kto_loss(r: torch.Tensor, desirable: torch.Tensor, z0: torch.Tensor | float, *, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> torch.Tensor:
    """Per-response KTO loss; ``desirable`` is 1.0 or 0.0 per row, ``z0`` the (detached) reference point."""
    z0 = torch.as_tensor(z0, dtype=r.dtype).detach()
    good = desirable_weight * (1.0 - torch.sigmoid(beta * (r - z0)))
    bad = undesirable_weight * (1.0 - torch.sigmoid(beta * (z0 - r)))
    return torch.where(desirable > 0.5, good, bad)


def reference_point(kl_logps: torch.Tensor, kl_ref_logps: torch.Tensor) -> torch.Tensor:
    """``z0 = max(0, mean(log pi(y'|x) - log pi_ref(y'|x)))`` over the batch's mismatched pairs, detached."""
    return (kl_logps - kl_ref_logps).mean().clamp(min=0.0).detach()


def objective(batch: LogProbBatch, params: KTOParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r = batch.log_ratio("completion")
    z0 = reference_point(batch.logps["kl"], batch.ref_logps["kl"]) if "kl" in batch.logps else torch.tensor(0.0)
    desirable = batch.values["desirable"]
    loss = kto_loss(r, desirable, z0, beta=params.beta, desirable_weight=params.desirable_weight,
                    undesirable_weight=params.undesirable_weight)
    good = desirable > 0.5
    metrics = {"kl_z0": z0, "reward_desirable": (r * good).sum().detach() / good.sum().clamp(min=1),
               "reward_undesirable": (r * ~good).sum().detach() / (~good).sum().clamp(min=1)}
    return loss, metrics


def sampler(ctx: RoundContext) -> list[Row]:
    """Feedback rows ``{"completion"}`` (+ ``{"kl"}``: this prompt with the next row's completion)."""
    p: KTOParams = ctx.params
    rows = list(ctx.data.feedback())
    if p.limit is not None and p.limit < len(rows):
        rows = ctx.rng.sample(rows, p.limit)
    out = []
    for i, f in enumerate(rows):
        seqs = {"completion": Sequence(f.prompt, f.completion)}
        if p.kl_estimate:
            seqs["kl"] = Sequence(f.prompt, rows[(i + 1) % len(rows)].completion)
        out.append(Row(seqs, {"desirable": 1.0 if f.desirable else 0.0}))
    return out


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``kto``."""
    register(MethodSpec(
        name="kto", family="unpaired-feedback",
        description="KTO: prospect-theoretic loss on responses labelled desirable or undesirable (unpaired), "
        "reference point = batch KL on mismatched pairs",
        paper=PAPER, sampler=sampler, objective=objective, params=KTOParams,
        needs=frozenset({FEEDBACK}), reference="initial",
    ))
