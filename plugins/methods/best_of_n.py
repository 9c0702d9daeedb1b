"""Iterated best-of-n / filtered behaviour cloning: keep each prompt's best on-policy sample and imitate it.

Paper: as run by Tajwar et al. 2024 (arXiv 2404.14367), bandit code: ``-log pi(a_best)`` over N = 10
samples per state, refreshed every epoch from the current policy (LLM code ``bofn.py``). The
negative-gradient variant adds ``+beta * log pi(a_worst)``, pushing the worst sample down.

**Loss.** Per row (one per prompt) ``-log pi(y_best|x) + beta * log pi(y_worst|x)``, summed over
response tokens. With ``beta = 0`` (default) this is pure maximum likelihood on the filtered samples
(no negative gradient). With ``beta > 0`` and no reference, log pi(y_worst) can be pushed down without
bound; keep beta small (the paper's "constrained" variant, minus log pi_ref, is not implemented).

**Data.** Each round samples ``n`` completions per prompt from the current policy with the shared
:func:`harness.training.samplers.best_of_n` sampler, scored by the method's reward (summed if dense). Sample
reuse is ``train.steps``. Defaults: n = 10 (bandit); lr 1e-3 is the bandit code's on-policy BoN lr;
rounds/steps are ours (same budget as ``reinforce``).

**Ties.** A prompt whose ``n`` samples all get the same reward has no best sample (on GSM8K or HumanEval
that is usually "all wrong": keeping the first would imitate a failed answer). ``on_tie = "skip"``
(default) leaves such prompts out of the round; ``"demonstration"`` imitates the prompt's demonstration
instead where the benchmark has one (and skips it where not); ``"keep"`` keeps the first sample (the
old behaviour). Every step reports the round's ``tied_prompts`` (skipped) and ``demo_fallbacks``. A
round where every prompt tied trains on one zero-weight placeholder row (zero gradient), as on-policy
DPO does when it finds no pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from harness import (
    LogProbBatch,
    RoundContext,
    Row,
    Sequence,
    hookimpl,
    param,
    pg,
)
from harness.rewards import ScalarReward, current_reward
from harness.samplers import best_of_n

PAPER = "Tajwar et al. 2024, arXiv 2404.14367 (iterated best-of-N / filtered BC)"


@dataclass(frozen=True)
class BestOfNParams(pg.OnPolicyParams):
    n: int = param(10, "samples per prompt per round; the best is kept (bandit code: N = 10)", ge=1)
    beta: float = param(0.0, "weight of +log pi(worst sample): the negative-gradient variant (0 = off)", ge=0)
    on_tie: Literal["skip", "demonstration", "keep"] = param("skip", "a prompt whose samples all tie: skip | demonstration (its demonstration, "
                        "where the benchmark has one; else skipped) | keep (the first sample)")


def best_of_n_loss(best: torch.Tensor, worst: torch.Tensor | None = None, *, beta: float = 0.0
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-row ``-log pi(best) + beta * log pi(worst)`` (the second term only with ``worst``)."""
    loss = -best
    metrics = {"logp_best": best.mean().detach()}
    if worst is not None and beta:
        loss = loss + beta * worst
        metrics["logp_worst"] = worst.mean().detach()
    return loss, metrics


def objective(batch: LogProbBatch, params: BestOfNParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss, metrics = best_of_n_loss(batch.logps["best"], batch.logps.get("worst"), beta=params.beta)
    v = batch.values
    if "weight" in v:
        loss = loss * v["weight"]
        metrics = {**metrics, "tied_prompts": v["tied"].mean(), "demo_fallbacks": v["demo_fallbacks"].mean()}
    return loss, {**metrics, "reward": v["reward"].mean()}


def _demonstrations(ctx: RoundContext) -> dict[tuple[int, ...], Sequence]:
    """Prompt ids -> the first demonstration of that prompt (empty if the benchmark has none)."""
    if "demonstrations" not in ctx.data.provides:
        return {}
    out: dict[tuple[int, ...], Sequence] = {}
    for d in ctx.data.demonstrations():
        out.setdefault(tuple(d.prompt.ids), d)
    return out


def resolve_ties(rows: list[Row], on_tie: str, demos: dict[tuple[int, ...], Sequence],
                 with_worst: bool) -> list[Row]:
    """Drop (or replace by a demonstration) the rows whose samples all tied (best reward == worst reward);
    every row gets ``weight``, ``tied`` (prompts skipped this round) and ``demo_fallbacks``."""
    kept: list[tuple[dict[str, Sequence], float, float]] = []
    skipped = fallbacks = 0
    for r in rows:
        seqs = {"best": r.seqs["best"], **({"worst": r.seqs["worst"]} if with_worst else {})}
        tie = r.values["reward"] <= r.values["reward_worst"]
        if not tie or on_tie == "keep":
            kept.append((seqs, r.values["reward"], r.values["reward_worst"]))
            continue
        demo = demos.get(tuple(r.seqs["best"].prompt.ids)) if on_tie == "demonstration" else None
        if demo is None:
            skipped += 1
            continue
        fallbacks += 1
        kept.append(({**seqs, "best": demo}, r.values["reward"], r.values["reward_worst"]))
    extra = {"tied": float(skipped), "demo_fallbacks": float(fallbacks)}
    if not kept and rows:  # every prompt tied: a zero-weight placeholder keeps the round going
        empty = Sequence(rows[0].seqs["best"].prompt, ())
        return [Row({"best": empty, **({"worst": empty} if with_worst else {})},
                    {"reward": rows[0].values["reward"], "reward_worst": rows[0].values["reward_worst"],
                     "weight": 0.0, **extra})]
    return [Row(seqs, {"reward": best, "reward_worst": worst, "weight": 1.0, **extra})
            for seqs, best, worst in kept]


def sampler(ctx: RoundContext) -> list[Row]:
    p: BestOfNParams = ctx.params
    rows = best_of_n(ctx, n=p.n, limit=p.limit, with_worst=True, generation=p.generation(ctx),
                     score=ScalarReward(current_reward(ctx)))
    demos = _demonstrations(ctx) if p.on_tie == "demonstration" else {}
    return resolve_ties(rows, p.on_tie, demos, with_worst=p.beta > 0)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``best-of-n``."""
    register(pg.on_policy_spec(
        "best-of-n", "Iterated best-of-n / filtered BC: imitate each prompt's best on-policy sample "
        "(beta > 0: also push down the worst)",
        paper=PAPER, sampler=sampler, objective=objective, params=BestOfNParams, reference="none",
        train={"batch_size": 10},
        real_train_defaults={"lr": 1e-6},  # as PPO (Ouyang et al. / Stiennon et al.: 1e-6), the RL family on LLMs
    ))
