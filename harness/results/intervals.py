"""Paired intervals with a named estimand, their p-values, and the multiple-comparison correction.

A paired difference of two methods on a benchmark is a ``seeds x items`` matrix ``d[s, i]`` (method minus
baseline, same seed, same item). Two questions can be asked of it, and each has its own interval:

- **"items like these, over seeds and items"** (the headline; :func:`twoway`): the difference a reader
  expects on a new draw of items from the same population and a new training seed. The model is
  ``d[s, i] = mu + a_s + b_i + e_si`` (seed, item-by-method and residual random effects); the two-way
  ANOVA mean squares estimate ``S*I*Var(mean) = max(ms_seed, ms_resid) + max(ms_item - ms_resid, 0)``
  and a Student t with ``S - 1`` df gives the interval (:func:`twoway_variance`). It needs >= 2 seeds and
  >= 2 items: with one seed the seed component is unknown and no interval is given.
- **"these items, over seeds"** (:func:`by_seed`, the leaderboard's): the benchmark's items held fixed,
  the mean over training seeds; the Student t over the per-seed differences (no interval when every seed
  gives the same difference). :func:`by_seed_items` is the same estimand from the item matrix,
  ``S*I*Var(mean) = max(ms_seed, ms_resid)`` with ``S - 1`` df (``harness plan`` plans with it). It is
  narrower whenever items vary, and it does not cover the population difference when the item-by-method
  variance dominates.

Why ``S - 1`` df and the ``ms_resid`` floor: with 2-3 seeds a small seed mean square by chance made a
Satterthwaite df large and the interval far too narrow (coverage down to 0.86 in the study), and two seeds
that agree exactly on a 0/1 metric of 10 items gave a zero-width by-seed interval (coverage 0.84-0.88). The
seed mean square, with ``S - 1`` df, is part of every estimate, so ``t_{S-1}`` is conservative.

``python -m harness.bench.coverage`` measures their coverage (and that of the percentile bootstrap the
leaderboard used to print, and of the Satterthwaite variant) in simulation; ``tests/test_coverage.py`` runs a
fast version.

:func:`adjust` applies Holm's step-down correction (or Bonferroni) to a family of p-values.
:func:`mde` and :func:`seeds_needed` answer "how many seeds?" from the variance components.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.results.student_t import t_cdf, t_quantile

CORRECTIONS = ("holm", "bonferroni", "none")
ALPHA = 0.05
POPULATION = "items like these, over seeds and items"
THESE_ITEMS = "these items, over seeds"


def t_pvalue(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic (1.0 for t = 0 or NaN; 0.0 for an infinite t)."""
    if math.isnan(t):
        return 1.0
    if math.isinf(t):
        return 0.0
    return min(1.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


@dataclass(frozen=True)
class Interval:
    """A paired difference: mean, 95% half-width (None: no valid interval, ``why`` says why), df, p-value,
    what it estimates, and (two-way only) the variance components."""

    mean: float
    half: float | None
    df: float | None
    p: float | None
    estimand: str
    seeds: int
    items: int | None = None
    why: str | None = None
    components: tuple[float, float, float] | None = None  # (seed, item, residual) variances of d
    seed_var: float | None = None  # by-seed only: the variance of the per-seed differences

    @property
    def n(self) -> int:
        """The number of seeds (as :class:`harness.results.leaderboard.Stat` names it)."""
        return self.seeds

    @property
    def lo(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def hi(self) -> float | None:
        return None if self.half is None else self.mean + self.half

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "ci95": self.half, "ci95_low": self.lo, "ci95_high": self.hi,
                               "n": self.seeds, "df": self.df, "p": self.p, "estimand": self.estimand}
        if self.items is not None:
            out["items"] = self.items
        if self.why:
            out["no_interval"] = self.why
        if self.components is not None:
            out["variance_components"] = dict(zip(("seed", "item", "residual"), self.components, strict=True))
        return out


def _t_interval(mean: float, se: float, df: float) -> tuple[float, float]:
    """(half-width, p) of a t interval; a zero standard error gives a zero width and p 0 (or 1 at mean 0)."""
    if se == 0.0:
        return 0.0, (1.0 if mean == 0.0 else 0.0)
    return t_quantile(1 - ALPHA / 2, df) * se, t_pvalue(mean / se, df)


def by_seed(diffs: Sequence[float]) -> Interval:
    """The per-seed differences' Student-t interval: estimand "these items, over seeds". One seed, or
    seeds that all give the same difference (the spread is then unknown, not 0): no interval."""
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return Interval(mean, None, None, None, THESE_ITEMS, n, why="1 seed: no interval")
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (n - 1))
    if sd <= 1e-12 * max(1.0, max(abs(x) for x in diffs)):  # equal up to rounding
        return Interval(mean, None, None, None, THESE_ITEMS, n, why="every seed gave the same difference: no interval")
    half, p = _t_interval(mean, sd / math.sqrt(n), n - 1)
    return Interval(mean, half, n - 1, p, THESE_ITEMS, n, seed_var=sd * sd)


def mean_squares(d: Any) -> tuple[Any, Any, Any]:
    """Two-way ANOVA mean squares (seeds, items, residual) of complete ``[..., S, I]`` matrices (S, I >= 2)."""
    import numpy as np

    d = np.asarray(d, dtype=float)
    n_s, n_i = d.shape[-2:]
    grand = d.mean(axis=(-2, -1), keepdims=True)
    rows, cols = d.mean(axis=-1, keepdims=True), d.mean(axis=-2, keepdims=True)
    ms_s = n_i * ((rows - grand) ** 2).sum(axis=(-2, -1)) / (n_s - 1)
    ms_i = n_s * ((cols - grand) ** 2).sum(axis=(-2, -1)) / (n_i - 1)
    ms_e = ((d - rows - cols + grand) ** 2).sum(axis=(-2, -1)) / ((n_s - 1) * (n_i - 1))
    return ms_s, ms_i, ms_e


def twoway_variance(ms_s: Any, ms_i: Any, ms_e: Any, population: bool = True) -> Any:
    """``S*I*Var(mean)``: ``max(ms_s, ms_e)`` (seed and residual variance; the floor keeps a chance
    agreement of the seeds from giving a zero width) plus, for the population estimand,
    ``max(ms_i - ms_e, 0)`` (the item-by-method variance). Works on numpy arrays."""
    import numpy as np

    v = np.maximum(ms_s, ms_e)
    return v + np.maximum(np.asarray(ms_i) - ms_e, 0.0) if population else v


def satterthwaite(ms_s: Any, ms_i: Any, ms_e: Any, n_s: int, n_i: int) -> tuple[Any, Any]:
    """The textbook alternative, NOT used by the leaderboard (the coverage study shows why): ``(S*I*Var(mean),
    df)`` with every component truncated at 0 (a small ``ms_s`` pooled into the residual) and
    Satterthwaite's df of that combination."""
    import numpy as np

    ms_s, ms_i, ms_e = (np.asarray(x, dtype=float) for x in (ms_s, ms_i, ms_e))
    c_s, c_i = (ms_s > ms_e).astype(float), (ms_i > ms_e).astype(float)
    c_e = 1.0 - c_s - c_i
    v = c_s * ms_s + c_i * ms_i + c_e * ms_e
    denom = (c_s * ms_s) ** 2 / (n_s - 1) + (c_i * ms_i) ** 2 / (n_i - 1) + (c_e * ms_e) ** 2 / ((n_s - 1) * (n_i - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, v**2 / np.where(denom > 0, denom, 1.0), float((n_s - 1) * (n_i - 1)))
    return v, np.minimum(df, n_s * n_i - 1)


def components(ms_s: float, ms_i: float, ms_e: float, n_s: int, n_i: int) -> tuple[float, float, float]:
    """Variance components (seed, item-by-method, residual) of ``d``, truncated at 0."""
    return max(ms_s - ms_e, 0.0) / n_i, max(ms_i - ms_e, 0.0) / n_s, ms_e


def _complete(diffs: Any) -> Any:
    import numpy as np

    d = np.asarray(diffs, dtype=float)
    if d.ndim != 2 or d.size == 0:
        raise ValueError("need a non-empty [seeds, items] matrix")
    return d[:, ~np.isnan(d).any(axis=0)]


def _matrix_interval(d: Any, population: bool) -> Interval:
    estimand = POPULATION if population else THESE_ITEMS
    n_s, n_i = d.shape
    if n_i == 0:
        return Interval(math.nan, None, None, None, estimand, n_s, 0, why="no item has a value in every seed")
    mean = float(d.mean())
    if n_s < 2:
        why = "1 seed: the seed variance is unknown, no interval"
        return Interval(mean, None, None, None, estimand, n_s, n_i, why=why)
    if n_i < 2:
        return Interval(mean, None, None, None, estimand, n_s, n_i, why="1 item: no interval")
    ms = tuple(float(x) for x in mean_squares(d))
    v = float(twoway_variance(*ms, population=population))
    half, p = _t_interval(mean, math.sqrt(v / (n_s * n_i)), n_s - 1)
    return Interval(mean, half, n_s - 1, p, estimand, n_s, n_i, components=components(*ms, n_s, n_i))


def twoway(diffs: Any) -> Interval:
    """The headline interval of a ``[seeds, items]`` matrix of paired differences: estimand "items like
    these, over seeds and items" (:func:`twoway_variance`, t with ``S - 1`` df). Items missing (NaN) in any
    seed are dropped first. One seed (or item): no interval."""
    return _matrix_interval(_complete(diffs), population=True)


def by_seed_items(diffs: Any) -> Interval:
    """The items-fixed interval of a ``[seeds, items]`` matrix: estimand "these items, over seeds"
    (``max(ms_seed, ms_resid)``, t with ``S - 1`` df)."""
    return _matrix_interval(_complete(diffs), population=False)


# -- multiple comparisons ------------------------------------------------------------------------------------


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise adjusted p-values: Holm's step-down (``p_(k) * (m - k + 1)``, made monotone, capped at 1),
    Bonferroni (``p * m``) or none."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    m = len(pvalues)
    if method == "none":
        return list(pvalues)
    if method == "bonferroni":
        return [min(1.0, p * m) for p in pvalues]
    order = sorted(range(m), key=lambda k: pvalues[k])
    out = [0.0] * m
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[k]))
        out[k] = running
    return out


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Welch t-test p-value of mean(a) - mean(b) (None: fewer than 2 values on a side or no spread)."""
    if len(a) < 2 or len(b) < 2:
        return None
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    if va + vb == 0:
        return None
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t_pvalue((ma - mb) / math.sqrt(va + vb), df)


# -- how many seeds ------------------------------------------------------------------------------------------


def se_of(comp: tuple[float, float, float] | None, seed_var: float | None, n_s: int, n_i: int | None,
          population: bool = True) -> float:
    """The standard error of a mean difference over ``n_s`` seeds (and ``n_i`` items): from the two-way
    components (seed, item, residual) when given, else from the variance of per-seed differences
    ``seed_var`` (items fixed)."""
    if comp is not None and n_i:
        s2a, s2b, s2e = comp
        return math.sqrt(s2a / n_s + (s2b / n_i if population else 0.0) + s2e / (n_s * n_i))
    return math.sqrt((seed_var or 0.0) / n_s)


def mde(comp: tuple[float, float, float] | None, seed_var: float | None, n_s: int, n_i: int | None,
        *, alpha: float = ALPHA, power: float = 0.8, population: bool = True) -> float:
    """The smallest true difference the two-sided level-``alpha`` test of the leaderboard's interval
    (t with ``n_s - 1`` df) detects with probability ``power``: ``(t_{1-alpha/2} + t_{power}) * SE``."""
    df = max(n_s - 1, 1)
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se_of(comp, seed_var, n_s, n_i, population)


def seeds_needed(effect: float, comp: tuple[float, float, float] | None, seed_var: float | None, n_i: int | None,
                 *, alpha: float = ALPHA, power: float = 0.8, population: bool = True, most: int = 1000) -> int | None:
    """The fewest seeds (>= 2) at which :func:`mde` <= ``|effect|`` with these items, or None when even
    ``most`` seeds do not (the item variance alone is too large: more items are needed)."""
    if effect == 0:
        return None
    for n_s in range(2, most + 1):
        if mde(comp, seed_var, n_s, n_i, alpha=alpha, power=power, population=population) <= abs(effect):
            return n_s
    return None
