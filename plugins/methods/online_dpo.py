"""On-policy (online) DPO and IPO: preference pairs sampled from the current policy, ranked by a reward.

Paper: Tajwar et al. 2024 (arXiv 2404.14367), section "on-policy sampling and negative gradients":
DPO/IPO applied to pairs drawn from pi_theta and ranked by a (proxy) reward, refreshed every batch.
Their bandit code uses N = 10 samples per state and ALL C(N, 2) pairs ranked by the true reward, DPO
beta 0.05 and IPO target margin 10; their LLM code (``online_dpo.py``) mixes offline preference pairs
into the online ones with a ``mixing_ratio``.

**Data.** Each round, :func:`harness.training.samplers.on_policy_preferences` draws ``n`` samples per prompt
(``limit`` prompts) from the current policy, scores them with the method's reward (``reward_source``:
the benchmark's true reward, a Bradley-Terry RM fitted on the offline pairs, or an LLM judge), and
keeps every pair (``pairs="all"``) or the best/worst pair per prompt whose reward gap exceeds
``min_gap``; ties are dropped. With ``mix > 0`` offline pairs are added so that they make up a fraction
``mix`` of the round's rows (drawn with the round's seeded rng). The reference is the initial policy.
Sample reuse is ``train.steps`` (optimizer steps on each round's pairs).

**Losses.** ``online-dpo``: :func:`alignment_harness_plugins.methods.dpo.dpo_loss`; ``online-ipo``:
:func:`alignment_harness_plugins.methods.ipo.ipo_loss` with target 1/(2 tau) (tau 0.05: margin 10).

Choices: the reward must be sequence-level here (the shared sampler calls ``ctx.reward``). A round
where every sample ties (a converged, deterministic policy) yields no pair; it then trains on one
zero-weight placeholder (zero gradient) instead of failing. Rows carry ``weight`` (0 only there).
Rounds/steps/batch/lr are ours, sized for the tiny didactic runs; the bandit code's on-policy IPO used
lr 1e-2 on its MLP, 100 rounds x 15 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from alignment_harness_plugins.methods.dpo import dpo_loss
from alignment_harness_plugins.methods.ipo import preference_objective
from harness import (
    LogProbBatch,
    RoundContext,
    Row,
    Sequence,
    hookimpl,
    param,
    pg,
)
from harness.samplers import offline_preferences, on_policy_preferences

PAPER = "Tajwar et al. 2024, arXiv 2404.14367 (on-policy DPO/IPO); DPO: Rafailov et al. 2023; IPO: Azar et al. 2023"
Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class OnlinePairsParams(pg.OnPolicyParams):
    """How both methods sample and rank their pairs."""

    n: int = param(10, "samples per prompt per round, ranked into pairs (bandit code: N = 10)", ge=1)
    pairs: Literal["all", "best-worst"] = param("all", "all C(n, 2) pairs (bandit code) or one best/worst pair")
    min_gap: float = param(0.0, "keep a pair only if its reward gap exceeds this")
    mix: float = param(0.0, "fraction of offline preference pairs in each round's rows (LLM code: 0-0.9)", ge=0, lt=1)


@dataclass(frozen=True)
class OnlineDPOParams(OnlinePairsParams):
    beta: float = param(0.05, "DPO inverse temperature (bandit code: 0.05)", gt=0)


@dataclass(frozen=True)
class OnlineIPOParams(OnlinePairsParams):
    tau: float = param(0.05, "IPO tau; target margin 1/(2 tau) (0.05 -> 10, the bandit code's)", gt=0)
    normalize: Literal["sum", "mean"] = param("sum", "h summed over tokens, or averaged (TRL's IPO)")


def sampler(ctx: RoundContext) -> list[Row]:
    """Fresh on-policy pairs (values: rewards, ``online`` = 1), plus offline pairs at fraction ``mix``."""
    p: OnlinePairsParams = ctx.params
    online = [
        Row(r.seqs, {**r.values, "online": 1.0, "weight": 1.0})
        for r in on_policy_preferences(ctx, n=p.n, limit=p.limit, pairs=p.pairs, min_gap=p.min_gap,
                                       generation=p.generation(ctx))
    ]
    k = round(p.mix / (1.0 - p.mix) * len(online))
    offline = []
    if k > 0:
        pool = offline_preferences(ctx)
        picked = ctx.rng.sample(pool, k) if k <= len(pool) else ctx.rng.choices(pool, k=k)
        offline = [Row(r.seqs, {"reward_chosen": 0.0, "reward_rejected": 0.0, "online": 0.0, "weight": 1.0})
                   for r in picked]
    if not online:
        # Every sample tied (e.g. a converged, deterministic policy): nothing to compare this round. One
        # zero-weight placeholder pair of empty responses keeps the round going with zero gradients.
        prompt = ctx.data.prompts()[0]
        empty = Sequence(prompt, ())
        online = [Row({"chosen": empty, "rejected": empty},
                      {"reward_chosen": 0.0, "reward_rejected": 0.0, "online": 0.0, "weight": 0.0})]
    return online + offline


def _gap(batch: LogProbBatch) -> torch.Tensor:
    online = batch.values["online"]
    gap = (batch.values["reward_chosen"] - batch.values["reward_rejected"]) * online
    return gap.sum() / online.sum().clamp(min=1)


def dpo_objective(batch: LogProbBatch, params: OnlineDPOParams) -> tuple[torch.Tensor, Metrics]:
    loss, metrics = dpo_loss(batch.logps["chosen"], batch.logps["rejected"], batch.ref_logps["chosen"],
                             batch.ref_logps["rejected"], beta=params.beta)
    return loss * batch.values["weight"], {**metrics, "reward_gap": _gap(batch)}


def ipo_objective(batch: LogProbBatch, params: OnlineIPOParams) -> tuple[torch.Tensor, Metrics]:
    loss, metrics = preference_objective(batch, params)
    return loss * batch.values["weight"], {**metrics, "reward_gap": _gap(batch)}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``online-dpo`` and ``online-ipo``."""
    common = dict(paper=PAPER, sampler=sampler, train={"batch_size": 128},
                  real_train_defaults={"lr": 5e-7})  # DPO's order (Rafailov et al.: 5e-7 .. 1e-6)
    register(pg.on_policy_spec(
        "online-dpo", "On-policy DPO: pairs sampled from the current policy, ranked by the reward "
        "(optionally mixed with offline pairs)",
        objective=dpo_objective, params=OnlineDPOParams, **common,
        real_params={"beta": 0.1},  # the toy uses Tajwar et al.'s 0.05; DPO's paper value is 0.1
    ))
    register(pg.on_policy_spec(
        "online-ipo", "On-policy IPO: pairs sampled from the current policy, ranked by the reward, "
        "(h_w - h_l - 1/(2 tau))^2",
        objective=ipo_objective, params=OnlineIPOParams, **common,
    ))
