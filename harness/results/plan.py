"""``harness plan``: how many seeds? From a finished sweep's variance components, per comparison to the
baseline (methods x goal metrics), the smallest difference the leaderboard's test detects with 80% power
at the sweep's seeds and items, and the seeds needed to detect a given ``--effect``.

A comparison with per-item values plans the headline interval ("items like these, over seeds and
items": the seed, item-by-method and residual components of the two-way interval) and the items-fixed one
("these items, over seeds"); one without plans the by-seed interval from the per-seed differences' variance.
The prediction is ``(t_{0.975, S-1} + t_{0.80, S-1}) * SE(S, I)``; ``python -m harness.bench.coverage``
(``plan_check``) and ``tests/test_coverage.py`` check it against simulated power (0.77-0.82 at nominal 0.80).
The item-by-method variance does not shrink with seeds: where it alone exceeds an effect, no number of
seeds detects it with these items, and the plan says more items are needed.
"""

from __future__ import annotations

from typing import Any

from harness.results.intervals import mde, seeds_needed
from harness.results.leaderboard import Leaderboard

MOST_SEEDS = 1000


def plan(lb: Leaderboard, effect: float | None = None, power: float = 0.8) -> list[dict[str, Any]]:
    """One row per goal-metric comparison to the baseline: current seeds/items, the observed difference,
    the minimum detectable difference now (headline and items-fixed), and the seeds needed for ``effect``."""
    out = []
    for r in lb.rows:
        for col in lb.columns:
            if not col.goal or col.key not in r.delta:
                continue
            seed_iv, item_iv = r.delta[col.key], r.item_delta.get(col.key)
            row: dict[str, Any] = {"method": r.label, "model": r.model, "metric": col.key, "seeds": seed_iv.seeds,
                                   "items": item_iv.items if item_iv else None, "difference": seed_iv.mean}
            comp = item_iv.components if item_iv is not None else None
            if comp is None and seed_iv.seed_var is None:
                row["note"] = (seed_iv.why or "no variance estimate") + "; run >= 2 seeds to plan"
                out.append(row)
                continue
            n_s, n_i = seed_iv.seeds if comp is None else item_iv.seeds, item_iv.items if item_iv else None
            estimands = [("items like these", True), ("these items", False)] if comp else [("these items", False)]
            for name, pop in estimands:
                key = "population" if pop else "these_items"
                row[f"mde_{key}"] = mde(comp, seed_iv.seed_var, n_s, n_i, power=power, population=pop)
                if effect is not None:
                    need = seeds_needed(effect, comp, seed_iv.seed_var, n_i, power=power, population=pop)
                    row[f"seeds_for_effect_{key}"] = need
                    if need is None:  # why: the item variance's floor, or just very many seeds
                        floor = pop and comp is not None and n_i and mde(comp, None, 10**6, n_i, power=power) > effect
                        row[f"why_no_seeds_{key}"] = "more items needed" if floor else f"> {MOST_SEEDS} seeds"
                row.setdefault("estimands", []).append(name)
            if comp:
                row["variance_components"] = dict(zip(("seed", "item", "residual"), comp, strict=True))
            else:
                row["seed_variance"] = seed_iv.seed_var
            out.append(row)
    return out


def render(rows: list[dict[str, Any]], effect: float | None, power: float = 0.8) -> str:
    """The plan as a table, with a line on what it means."""
    from tabulate import tabulate

    def num(x: Any) -> str:
        return "–" if x is None else f"{x:.4g}"

    def seeds(r: dict[str, Any], key: str) -> str:
        if f"mde_{key}" not in r:
            return "–"
        x = r.get(f"seeds_for_effect_{key}")
        return r.get(f"why_no_seeds_{key}", "–") if x is None else str(x)

    table = []
    for r in rows:
        line = [r["method"], r["metric"], r["seeds"], r["items"] or "–", num(r["difference"]),
                num(r.get("mde_population")), num(r.get("mde_these_items"))]
        if effect is not None:
            line += [seeds(r, "population"), seeds(r, "these_items")]
        if "note" in r:
            line.append(r["note"])
        table.append(line)
    heads = ["method", "metric", "seeds", "items", "difference", f"detectable at {power:.0%} power: items like these",
             "these items"]
    if effect is not None:
        heads += [f"seeds for {effect:g}: items like these", "these items"]
    if any("note" in r for r in rows):
        heads.append("note")
    text = tabulate(table, headers=heads, disable_numparse=True)
    return (f"{text}\n\nThe smallest true difference the leaderboard's two-sided 5% test finds with {power:.0%} "
            "power (before the multiple-comparison correction), from this sweep's variance components; "
            "\"items like these\" counts the item-by-method variance, which more seeds do not reduce.")
