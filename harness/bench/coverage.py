"""``python -m harness.bench.coverage``: the coverage study of the leaderboard's paired intervals.

Simulated paired differences ``d[s, i]`` (method minus baseline, seed s, item i) with a known truth, over
seeds in {1, 2, 3, 5, 10}, items in {10, 40, 200}, three variance shapes (seed-dominated, item-dominated,
balanced) and three outcome kinds:

- ``normal``: ``d = delta + a_s + b_i + e_si`` with normal seed, item-by-method and residual effects;
- ``heavy``: the same with Student-t(3) effects (scaled to the same variances): heavy tails;
- ``binary``: 0/1 correctness (accuracy-like): the baseline is right on item i with probability
  ``sigmoid(c_i)``, the method with ``sigmoid(c_i + delta + b_i + a_s)``, independently per seed and item.

For every interval the leaderboard can print, its empirical coverage at nominal 95% against its own
estimand, with the Monte-Carlo error ``sqrt(c (1 - c) / reps)``:

- ``twoway`` (headline; "items like these, over seeds and items"; :func:`harness.results.intervals.twoway`):
  truth ``delta`` (normal/heavy) or the population mean of ``sigmoid(c + delta + b + a) - sigmoid(c)``
  (binary, by Gauss-Hermite quadrature); shown with >= 2 seeds.
- ``by_seed_items`` ("these items, over seeds"; :func:`~harness.results.intervals.by_seed_items`, what
  ``harness plan`` plans with; not printed): truth ``delta + mean_i b_i`` given the drawn items (binary: the
  mean over the drawn items of the expectation over seeds). Its coverage of the population difference is
  reported too (``coverage_of_population``): that is not what it estimates.
- ``by_seed`` (the leaderboard's "these items" interval: the plain t over per-seed means, same truth as
  ``by_seed_items``; not shown where every seed gives the same mean, so its coverage is among the
  repetitions where it is shown; shown with >= 2 seeds). The
  leaderboard's per-method ``mean ± CI`` is the same t interval applied to one method's per-seed scores.
- ``satterthwaite``: the textbook two-way variant (components truncated, Satterthwaite df); not shown,
  reported to show why the leaderboard does not use it.
- ``bootstrap``: the two-way percentile bootstrap the leaderboard printed before (resamples seeds, when
  more than one, and items); no longer shown, reported against the population difference for reference.

Prints (or writes, ``--out``) JSON. ``--reps 2000`` puts the Monte-Carlo error near 0.005; the bootstrap
runs on ``--boot-reps`` repetitions of ``--resamples`` resamples (it is the slow part; ``--no-bootstrap``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.results.intervals import POPULATION, THESE_ITEMS, mean_squares, satterthwaite, twoway_variance
from harness.results.student_t import t_quantile

SEEDS = (1, 2, 3, 5, 10)
ITEMS = (10, 40, 200)
OUTCOMES = ("normal", "heavy", "binary")
# (seed, item-by-method, residual) variances of d for normal/heavy; (seed, item) logit sds for binary
SHAPES = {
    "seed-dominated": {"cont": (1.0, 0.05, 1.0), "logit": (0.8, 0.1)},
    "item-dominated": {"cont": (0.02, 1.0, 1.0), "logit": (0.05, 1.0)},
    "balanced": {"cont": (0.5, 0.5, 1.0), "logit": (0.4, 0.5)},
}
DELTA = 0.4
DIFFICULTY_SD = 1.5  # sd of the item difficulty logit c_i (binary)
TARGET = 0.93


@dataclass(frozen=True)
class Setting:
    outcome: str
    shape: str
    seeds: int
    items: int


# -- a vectorised t quantile ---------------------------------------------------------------------------------

_GRID = np.exp(np.linspace(math.log(0.2), math.log(1e5), 600))
_Q975 = np.array([t_quantile(0.975, float(df)) for df in _GRID])


def t975(df: np.ndarray) -> np.ndarray:
    """``t_quantile(0.975, df)`` for an array of df: log-log interpolation on a grid of exact values
    (relative error < 1e-3 on [0.2, 1e5]; the normal quantile beyond; only the Satterthwaite variant uses it)."""
    df = np.asarray(df, dtype=float)
    q = np.exp(np.interp(np.log(np.clip(df, _GRID[0], _GRID[-1])), np.log(_GRID), np.log(_Q975)))
    return np.where(df > _GRID[-1], 1.959963984540054, q)


# -- the intervals, vectorised over repetitions ------------------------------------------------------------


def twoway_batch(d: np.ndarray, population: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(mean, half-width) of :func:`harness.results.intervals.twoway` (``population``) or
    :func:`~harness.results.intervals.by_seed_items` for each ``d[r]`` of ``[R, S, I]``."""
    _, n_s, n_i = d.shape
    v = twoway_variance(*mean_squares(d), population=population)
    return d.mean(axis=(1, 2)), t_quantile(0.975, n_s - 1) * np.sqrt(v / (n_s * n_i))


def satterthwaite_batch(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, half-width, df) of the Satterthwaite variant (:func:`harness.results.intervals.satterthwaite`)."""
    _, n_s, n_i = d.shape
    v, df = satterthwaite(*mean_squares(d), n_s, n_i)
    return d.mean(axis=(1, 2)), t975(df) * np.sqrt(v / (n_s * n_i)), df


def by_seed_batch(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, half-width, shown) of the plain Student-t interval over the per-seed means of each ``d[r]``
    (:func:`harness.results.intervals.by_seed`: not shown when every seed gives the same mean)."""
    per_seed = d.mean(axis=2)
    n_s = per_seed.shape[1]
    sd = per_seed.std(axis=1, ddof=1)
    return per_seed.mean(axis=1), t_quantile(0.975, n_s - 1) * sd / math.sqrt(n_s), sd > 0


def bootstrap_batch(d: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the two-way percentile bootstrap (``paired_bootstrap``'s procedure) of each ``d[r]``: per
    resample, seed counts (only with > 1 seed) and item counts; the mean is ``ws @ d @ wi / (S I)``."""
    n_r, n_s, n_i = d.shape
    lo, hi = np.empty(n_r), np.empty(n_r)
    for r in range(n_r):
        ws = rng.multinomial(n_s, np.full(n_s, 1 / n_s), size=resamples) if n_s > 1 else np.ones((resamples, 1))
        wi = rng.multinomial(n_i, np.full(n_i, 1 / n_i), size=resamples)
        means = ((ws @ d[r]) * wi).sum(axis=1) / (n_s * n_i)
        lo[r], hi[r] = np.quantile(means, [0.025, 0.975])
    return lo, hi


# -- the simulation ------------------------------------------------------------------------------------------


def _effects(rng: np.random.Generator, shape: tuple[int, ...], sd: float, heavy: bool) -> np.ndarray:
    if sd == 0:
        return np.zeros(shape)
    if heavy:  # Student-t(3) has variance 3
        return sd * rng.standard_t(3, size=shape) / math.sqrt(3.0)
    return sd * rng.standard_normal(shape)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(60)
_GH_W = _GH_W / _GH_W.sum()  # E f(Z), Z ~ N(0, 1) = sum w f(x)


def binary_population_truth(sd_seed: float, sd_item: float) -> float:
    """E sigmoid(c + delta + b + a) - E sigmoid(c): one-dimensional quadratures (c + b + a is normal)."""
    total = math.sqrt(DIFFICULTY_SD**2 + sd_item**2 + sd_seed**2)
    return float((_GH_W * _sigmoid(DELTA + total * _GH_X)).sum() - (_GH_W * _sigmoid(DIFFICULTY_SD * _GH_X)).sum())


def simulate(s: Setting, reps: int, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    """``(d [reps, S, I], population truth, per-repetition truth for these items)``."""
    shape = SHAPES[s.shape]
    if s.outcome in ("normal", "heavy"):
        s2a, s2b, s2e = shape["cont"]
        heavy = s.outcome == "heavy"
        a = _effects(rng, (reps, s.seeds, 1), math.sqrt(s2a), heavy)
        b = _effects(rng, (reps, 1, s.items), math.sqrt(s2b), heavy)
        e = _effects(rng, (reps, s.seeds, s.items), math.sqrt(s2e), heavy)
        return DELTA + a + b + e, DELTA, DELTA + b[:, 0, :].mean(axis=1)
    sd_a, sd_b = shape["logit"]
    c = DIFFICULTY_SD * rng.standard_normal((reps, 1, s.items))
    b = sd_b * rng.standard_normal((reps, 1, s.items))
    a = sd_a * rng.standard_normal((reps, s.seeds, 1))
    base = rng.random((reps, s.seeds, s.items)) < _sigmoid(c)
    method = rng.random((reps, s.seeds, s.items)) < _sigmoid(c + DELTA + b + a)
    d = method.astype(float) - base.astype(float)
    # these items: E over the seed effect a (quadrature) of the method's probability, minus the baseline's
    lin = (c + DELTA + b)[:, 0, :]
    p_method = (_GH_W * _sigmoid(lin[:, :, None] + sd_a * _GH_X)).sum(axis=2)
    cond = (p_method - _sigmoid(c[:, 0, :])).mean(axis=1)
    return d, binary_population_truth(sd_a, sd_b), cond


def _cov(hit: np.ndarray) -> dict[str, float]:
    c = float(hit.mean())
    return {"coverage": round(c, 4), "mc_error": round(math.sqrt(max(c * (1 - c), 1e-12) / hit.size), 4)}


def run_setting(s: Setting, reps: int, rng: np.random.Generator, *, boot_reps: int = 0,
                resamples: int = 1000) -> dict[str, Any]:
    """One setting's coverage of every interval (``boot_reps`` 0: no bootstrap)."""
    d, pop, cond = simulate(s, reps, rng)
    out: dict[str, Any] = {**asdict(s), "reps": reps, "truth": round(pop, 6), "intervals": {}}
    iv = out["intervals"]
    if s.seeds >= 2:
        mean, half = twoway_batch(d)
        iv["twoway"] = {"shown": True, "estimand": POPULATION, **_cov(np.abs(mean - pop) <= half),
                        "mean_half_width": round(float(half.mean()), 4)}
        mean, half = twoway_batch(d, population=False)
        iv["by_seed_items"] = {"shown": False, "why": "harness plan's items-fixed numbers; the leaderboard prints by_seed",
                               "estimand": THESE_ITEMS, **_cov(np.abs(mean - cond) <= half),
                               "coverage_of_population": round(float((np.abs(mean - pop) <= half).mean()), 4),
                               "mean_half_width": round(float(half.mean()), 4)}
        mean, half, shown = by_seed_batch(d)
        iv["by_seed"] = {"shown": True, "estimand": THESE_ITEMS, **_cov((np.abs(mean - cond) <= half)[shown]),
                         "fraction_shown": round(float(shown.mean()), 4),
                         "note": "without per-item values; not shown where every seed gives the same mean"}
        mean, half, df = satterthwaite_batch(d)
        iv["satterthwaite"] = {"shown": False, "why": "the textbook variant; not used (under-covers with 2-3 seeds)",
                               "estimand": POPULATION, **_cov(np.abs(mean - pop) <= half),
                               "median_df": round(float(np.median(df)), 2)}
    else:
        why = "1 seed: the seed variance is unknown; the leaderboard prints no interval"
        for name in ("twoway", "by_seed_items", "by_seed"):
            iv[name] = {"shown": False, "why": why}
    if boot_reps:
        k = min(boot_reps, reps)
        lo, hi = bootstrap_batch(d[:k], resamples, rng)
        iv["bootstrap"] = {"shown": False, "why": "no longer printed (under-covers)", "estimand": POPULATION,
                           **_cov((lo <= pop) & (pop <= hi)), "reps": k, "resamples": resamples}
    return out


def rejection_rate(comp: tuple[float, float, float], n_s: int, n_i: int, delta: float, reps: int,
                   rng: np.random.Generator) -> float:
    """How often the leaderboard's headline test (the two-way interval excludes 0) rejects when the true
    difference is ``delta``, normal effects with variance components ``comp`` (seed, item, residual)."""
    s2a, s2b, s2e = comp
    d = (delta + math.sqrt(s2a) * rng.standard_normal((reps, n_s, 1))
         + math.sqrt(s2b) * rng.standard_normal((reps, 1, n_i)) + math.sqrt(s2e) * rng.standard_normal((reps, n_s, n_i)))
    mean, half = twoway_batch(d)
    return float((np.abs(mean) > half).mean())


PLAN_CHECKS = (((1.0, 0.05, 1.0), 3, 40), ((0.02, 1.0, 1.0), 5, 40), ((0.5, 0.5, 1.0), 5, 200),
               ((0.1, 0.3, 1.0), 10, 10))


def plan_check(reps: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``harness plan``'s predictions against simulation: the power at the predicted minimum detectable
    difference (nominal 0.80), and at the predicted seed count for that difference with one seed fewer."""
    from harness.results.intervals import mde, seeds_needed

    out = []
    for comp, n_s, n_i in PLAN_CHECKS:
        m = mde(comp, None, n_s, n_i)
        need = seeds_needed(m, comp, None, n_i)
        out.append({"components": dict(zip(("seed", "item", "residual"), comp, strict=True)), "seeds": n_s,
                    "items": n_i, "predicted_mde": round(m, 4), "power_at_mde": rejection_rate(comp, n_s, n_i, m, reps, rng),
                    "predicted_seeds_for_mde": need})
    return out


def settings(seeds: tuple[int, ...] = SEEDS, items: tuple[int, ...] = ITEMS, outcomes: tuple[str, ...] = OUTCOMES,
             shapes: tuple[str, ...] = tuple(SHAPES)) -> list[Setting]:
    return [Setting(o, sh, s, i) for o in outcomes for sh in shapes for s in seeds for i in items]


def study(grid: list[Setting], reps: int, seed: int = 0, *, boot_reps: int = 0, resamples: int = 1000) -> dict[str, Any]:
    """Every setting's coverage and, per interval, the lowest coverage where it is shown."""
    rng = np.random.default_rng(seed)
    rows = [run_setting(s, reps, rng, boot_reps=boot_reps, resamples=resamples) for s in grid]
    summary: dict[str, Any] = {}
    for name in ("twoway", "by_seed_items", "by_seed", "satterthwaite", "bootstrap"):
        cells = [(r, r["intervals"][name]) for r in rows if name in r["intervals"] and "coverage" in r["intervals"][name]]
        if not cells:
            continue
        worst = min(cells, key=lambda rc: rc[1]["coverage"])
        summary[name] = {"shown": any(c["shown"] for _, c in cells), "min_coverage": worst[1]["coverage"],
                         "at": {k: worst[0][k] for k in ("outcome", "shape", "seeds", "items")},
                         "settings_below_target": sum(c["coverage"] < TARGET for _, c in cells)}
    return {"nominal": 0.95, "target": TARGET, "delta": DELTA, "reps": reps, "rng_seed": seed,
            "summary": summary, "plan_check": plan_check(reps, rng), "settings": rows}


def table(result: dict[str, Any]) -> str:
    """A markdown table of the study: one row per setting, coverage ± MC error per interval."""
    names = [("twoway", "two-way: items like these"), ("by_seed_items", "by-seed from the item matrix (harness plan)"),
             ("by_seed", "by-seed t: these items"), ("satterthwaite", "Satterthwaite (not used)"),
             ("bootstrap", "old bootstrap (removed)")]
    names = [(k, h) for k, h in names if any(k in r["intervals"] for r in result["settings"])]
    lines = ["| outcome | variance | seeds | items | " + " | ".join(h for _, h in names) + " | by-seed vs population |",
             "|---" * (len(names) + 5) + "|"]
    for r in result["settings"]:
        iv = r["intervals"]

        def cell(name: str, iv: dict[str, Any] = iv) -> str:
            c = iv.get(name)
            if c is None:
                return ""
            if "coverage" not in c:
                return "not shown"
            return f"{c['coverage']:.3f} ± {c['mc_error']:.3f}"

        pop = iv["by_seed_items"].get("coverage_of_population")
        lines.append(f"| {r['outcome']} | {r['shape']} | {r['seeds']} | {r['items']} | "
                     + " | ".join(cell(k) for k, _ in names) + f" | {'' if pop is None else f'{pop:.3f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2000, help="repetitions per setting")
    ap.add_argument("--seed", type=int, default=0, help="the simulation's rng seed")
    ap.add_argument("--boot-reps", type=int, default=300, help="repetitions of the (slow) bootstrap per setting")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--no-bootstrap", action="store_true", help="skip the old bootstrap")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here (default: stdout)")
    ap.add_argument("--markdown", action="store_true", help="print the markdown table instead of JSON")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = study(settings(), a.reps, a.seed, boot_reps=0 if a.no_bootstrap else a.boot_reps, resamples=a.resamples)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = table(result) if a.markdown else json.dumps(result, indent=1)
    if a.out:
        a.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {a.out} ({result['seconds']} s); lowest coverage where shown: "
              + ", ".join(f"{k} {v['min_coverage']}" for k, v in result["summary"].items() if v["shown"]),
              file=sys.stderr)
    if not a.out or a.markdown:
        print(text)


if __name__ == "__main__":
    main()
