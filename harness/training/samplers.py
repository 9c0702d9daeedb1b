"""Samplers that build a round's training set; methods reuse them rather than writing their own.

- :func:`offline_demonstrations`, :func:`offline_preferences`: data as given;
- :func:`self_generated`: demonstrations paired with samples of the reference or current policy
  (SPIN, GSIL), regenerated every round;
- :func:`on_policy_preferences`: n samples per prompt ranked by a reward into pairs (online DPO/IPO);
- :func:`best_of_n`: keep the top sample per prompt by a reward (iterated best-of-n, filtered BC).

Each takes the :class:`~harness.core.context.RoundContext` and returns ``list[Row]``; a sampler can be
passed to ``MethodSpec(sampler=...)`` directly or through ``functools.partial`` for its settings.

Every generation goes through ``ctx.cache`` when the trainer provides one: samples of the initial
reference or of the untrained policy are then shared by cells that generate the same (see
:mod:`harness.core.cache`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from harness.core.context import RoundContext
from harness.core.data import Completion, Prompt, Row, Sequence
from harness.core.seeds import derive_seed

Generation = dict[str, Any]


def _subsample(items: list[Any], limit: int | None, ctx: RoundContext) -> list[Any]:
    if limit is None or limit >= len(items):
        return list(items)
    return ctx.rng.sample(list(items), limit)


def offline_demonstrations(ctx: RoundContext, *, limit: int | None = None, role: str = "demo") -> list[Row]:
    """The benchmark's demonstrations as rows ``{role: sequence}``."""
    return [Row({role: s}) for s in _subsample(ctx.data.demonstrations(), limit, ctx)]


def offline_preferences(ctx: RoundContext, *, limit: int | None = None) -> list[Row]:
    """The benchmark's preference pairs as rows ``{"chosen", "rejected"}``."""
    return [
        Row({"chosen": Sequence(p.prompt, p.chosen), "rejected": Sequence(p.prompt, p.rejected)})
        for p in _subsample(ctx.data.preferences(), limit, ctx)
    ]


def generate(
    ctx: RoundContext, source: str, prompts: list[Prompt], n: int, generation: Generation
) -> list[list[Completion]]:
    """``n`` completions per prompt from ``source`` ("reference" or "policy"), seeded by (seed, round),
    through the cell's cache when there is one. Every sampler (and :func:`harness.training.pg.rollouts`) uses this."""
    lm = ctx.reference if source == "reference" else ctx.policy
    if lm is None:
        raise ValueError("sampling from the reference needs a method with a reference model")
    settings = {"temperature": 0.0, "max_new_tokens": 64, **generation}
    seed = derive_seed(ctx.seed, ctx.round)
    if ctx.cache is not None:  # reuses samples of a model whose identity is known (see harness.core.cache)
        return ctx.cache.generate(source, lm, prompts, n=n, seed=seed, **settings)
    return lm.generate(prompts, n=n, seed=seed, **settings)


def self_generated(
    ctx: RoundContext,
    *,
    source: str = "reference",
    n: int = 1,
    limit: int | None = None,
    generation: Generation | None = None,
    real: str = "real",
    generated: str = "generated",
) -> list[Row]:
    """Each demonstration paired with ``n`` responses generated for its prompt (one row per sample).

    ``source="reference"`` samples the round's reference (for SPIN and GSIL the previous iterate);
    ``"policy"`` the current policy. Greedy by default (``generation={"temperature": 0.0}``).
    """
    demos = _subsample(ctx.data.demonstrations(), limit, ctx)
    outs = generate(ctx, source, [d.prompt for d in demos], n, generation or {})
    return [Row({real: d, generated: c.as_sequence()}) for d, cs in zip(demos, outs, strict=True) for c in cs]


def _score(ctx: RoundContext, prompts: list[Prompt], outs: list[list[Completion]]) -> list[list[float]]:
    return [[ctx.reward(p, c) for c in cs] for p, cs in zip(prompts, outs, strict=True)]


def on_policy_preferences(
    ctx: RoundContext,
    *,
    n: int = 4,
    limit: int | None = None,
    pairs: str = "all",
    min_gap: float = 0.0,
    generation: Generation | None = None,
    source: str = "policy",
) -> list[Row]:
    """``n`` samples per prompt ranked by reward into pairs ``{"chosen", "rejected"}``.

    ``pairs="all"`` keeps every pair whose reward gap exceeds ``min_gap`` (Tajwar et al.'s bandit
    uses all C(n, 2) pairs); ``"best-worst"`` keeps one pair per prompt. Ties are dropped.
    """
    prompts = _subsample(ctx.data.prompts(), limit, ctx)
    outs = generate(ctx, source, prompts, n, {"temperature": 1.0, **(generation or {})})
    rewards = _score(ctx, prompts, outs)
    rows = []
    for cs, rs in zip(outs, rewards, strict=True):
        ranked = sorted(zip(rs, range(len(cs)), cs, strict=True), key=lambda t: -t[0])
        if pairs == "best-worst":
            candidates = [(ranked[0], ranked[-1])] if len(ranked) > 1 else []
        else:
            candidates = list(itertools.combinations(ranked, 2))
        for (rw, _, cw), (rl, _, cl) in candidates:
            if rw - rl > min_gap:
                rows.append(
                    Row(
                        {"chosen": cw.as_sequence(), "rejected": cl.as_sequence()},
                        {"reward_chosen": rw, "reward_rejected": rl},
                    )
                )
    return rows


def best_of_n(
    ctx: RoundContext,
    *,
    n: int = 4,
    limit: int | None = None,
    with_worst: bool = False,
    generation: Generation | None = None,
    source: str = "policy",
    score: Callable[[Prompt, Completion], float] | None = None,
) -> list[Row]:
    """The top sample per prompt by reward as rows ``{"best"}`` (plus ``{"worst"}`` if asked)."""
    prompts = _subsample(ctx.data.prompts(), limit, ctx)
    outs = generate(ctx, source, prompts, n, {"temperature": 1.0, **(generation or {})})
    scorer = score or ctx.reward
    rows = []
    for p, cs in zip(prompts, outs, strict=True):
        rs = [scorer(p, c) for c in cs]
        best = max(range(len(cs)), key=lambda i: rs[i])
        worst = min(range(len(cs)), key=lambda i: rs[i])
        seqs = {"best": cs[best].as_sequence()}
        if with_worst:
            seqs["worst"] = cs[worst].as_sequence()
        rows.append(Row(seqs, {"reward": rs[best], "reward_worst": rs[worst]}))
    return rows
