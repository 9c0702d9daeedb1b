"""The leaderboard: mean ± 95% CI over seeds per method and benchmark metric, ranks, a paired baseline.

- Rows are method labels (``dpo(beta=0.05)``) x model; columns are benchmark metrics labelled
  ``<benchmark> v<version> / <metric>`` (an lm-eval style ``metric,filter`` shows as ``metric [filter]``;
  a metric of an extra ``eval`` benchmark adds ``(trained on <benchmark>)``). Values are each cell's
  last evaluated round (the final evaluation).
- A value is ``mean ± h (n=…)`` with ``h`` the half-width of the Student-t 95% interval over seeds
  (``t_{0.975, n-1} · s / √n``). :func:`~harness.results.student_t.t_quantile` is exact (incomplete beta). A value with one seed
  has no interval: it is shown as ``mean (n=1, unranked)`` and takes no rank.
- Each metric is a **goal** (ranked, counted in the average rank) or a **diagnostic** (shown, not
  ranked: ``kl_ref``, entropy, format compliance), and higher or lower is better. The benchmark declares
  both (``BenchmarkSpec.metrics``, :class:`harness.core.registry.MetricSpec`); a suite's ``[leaderboard]``
  table overrides them (``lower_is_better``, ``higher_is_better``, ``goals``, ``diagnostics``: lists of
  metric names, ``<metric>`` or ``<benchmark>/<metric>``). An undeclared metric is a goal, lower is better
  when its name has a token ``kl``, ``loss``, ``error``/``err``, ``ppl``/``perplexity``, ``nll`` or
  ``regret``.
  The settings are stored with the sweep at every run, so a changed ``[leaderboard]`` table is honoured
  on a rerun against an existing store.
- Ranks: each goal column ranks its rows with n >= 2 (1 = best); means equal within a numerical
  tolerance (:data:`REL_TOL`, :data:`ABS_TOL`) tie and share the mean rank. ``avg rank`` averages a row's
  goal ranks; rows are sorted by it. The top row is marked best (``*`` in text, bold in markdown, LaTeX
  and HTML) only when it is alone at rank 1 and it beats the runner-up AFTER the multiple-comparison
  correction: the paired-by-seed t-test (when they share >= 2 seeds, else Welch's) p-value of top vs
  runner-up, adjusted over the family of goal columns that have such a test.
- ``--baseline METHOD``: per row and column, the difference to the baseline row of the same model, with
  an interval that names its estimand (:mod:`harness.results.intervals`; coverage checked by
  ``python -m harness.bench.coverage``):
  "these items, over seeds" (paired by seed, Student t over the per-seed differences) and, for metrics
  whose benchmark declares a per-item field, the headline "items like these, over seeds and items"
  (paired item by item: a two-way seeds x items random-effects variance, t with seeds - 1 df). One seed,
  or seeds that agree exactly, give no interval, and the table says so.
- Multiple comparisons: the goal-metric differences to the baseline form one family (methods x goal
  metrics); their p-values (from the headline interval where there is one, else the by-seed one) are
  adjusted by ``[leaderboard] correction`` = ``"holm"`` (default), ``"bonferroni"`` or ``"none"``.
  "significant" means adjusted p < 0.05. The correction and the family sizes are printed under the table;
  the JSON has raw and adjusted p-values.
- Items pair by the records' ``item_id`` (:func:`harness.core.context.item_id`); a method whose cells
  evaluated different items than the baseline's is not paired and gets one line under the table (and in
  the JSON's ``item_notes``). Records stored before item ids pair by position, with a line saying so.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.errors import HarnessError, did_you_mean
from harness.results.student_t import t_quantile
from harness.results.intervals import ALPHA, CORRECTIONS, Interval, adjust, by_seed, twoway, welch_p
from harness.sweeps.store import Store

FORMATS = ("table", "markdown", "csv", "latex", "html", "json")
LOWER_TOKENS = {"kl", "loss", "error", "err", "ppl", "perplexity", "regret", "nll"}


# -- statistics ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean, 95% CI half-width (None for n < 2) and n of some values."""

    mean: float
    half: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float], level: float = 0.95) -> Stat:
        n = len(values)
        mean = sum(values) / n
        if n < 2:
            return cls(mean, None, n)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        return cls(mean, t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n), n)


REL_TOL = 1e-6
ABS_TOL = 1e-9
"""Two means tie when ``math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)``."""

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
SETTINGS_KEYS = ("metrics", "baseline", "lower_is_better", "higher_is_better", "goals", "diagnostics", "correction")


def lower_is_better(metric: str, extra: Iterable[str] = ()) -> bool:
    """The name heuristic for an undeclared metric: kl/loss/error/ppl/regret tokens, or a name in ``extra``."""
    name = metric.split(",", 1)[0]
    if metric in extra or name in extra:
        return True
    return bool(set(re.split(r"[^a-z0-9]+", name.lower())) & LOWER_TOKENS)


@dataclass(frozen=True)
class ItemStat:
    """A paired item-level difference: its mean and percentile-bootstrap 95% interval."""

    mean: float
    lo: float
    hi: float
    items: int
    seeds: int


def paired_bootstrap(diffs: Any, *, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
                     level: float = 0.95) -> ItemStat:
    """Mean and percentile interval of item-level paired differences ``diffs[seed, item]`` (NaN: missing).

    NO LONGER PRINTED by the leaderboard: with few seeds it under-covers (``python -m harness.bench.coverage``;
    the leaderboard prints :func:`harness.results.intervals.twoway`). Kept as the study's reference.

    Each resample draws ``S`` seeds with replacement (only when ``S > 1``) and then ``I`` items with
    replacement, the same items for every drawn seed, and takes the mean of that sub-matrix; the interval
    is the ``(1 ± level) / 2`` quantiles of ``reps`` such means (numpy's default linear quantile). The
    draws come from ``numpy.random.default_rng(seed)``: seeds first, then items, per resample."""
    import numpy as np

    d = np.asarray(diffs, dtype=float)
    if d.ndim != 2 or d.size == 0:
        raise ValueError("paired_bootstrap needs a non-empty [seeds, items] matrix")
    n_seeds, n_items = d.shape
    rng = np.random.default_rng(seed)
    means = np.empty(reps)
    for b in range(reps):
        s = rng.integers(0, n_seeds, size=n_seeds) if n_seeds > 1 else np.zeros(1, dtype=int)
        i = rng.integers(0, n_items, size=n_items)
        means[b] = np.nanmean(d[np.ix_(s, i)])
    lo, hi = np.nanquantile(means, [(1 - level) / 2, (1 + level) / 2])
    return ItemStat(float(np.nanmean(d)), float(lo), float(hi), n_items, n_seeds)


# -- metric settings ---------------------------------------------------------------------------------------


def _declarations(settings: dict[str, Any], benchmarks: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """Benchmark -> MetricSpecs: stored with the sweep, else from the installed plugins (if they load)."""
    from harness.core.registry import MetricSpec

    stored = settings.get("declared")
    if isinstance(stored, dict):
        return {b: tuple(MetricSpec(**m) for m in ms) for b, ms in stored.items()}
    try:
        from harness.core.plugins import get_host

        reg = get_host().registry
    except Exception:  # noqa: BLE001 - a leaderboard must show even when plugins no longer load
        return {}
    out = {}
    for b in benchmarks:
        spec = reg.specs["benchmark"].get(b)
        if spec is not None:
            out[b] = tuple(getattr(spec, "metrics", ()))
    return out


def _listed(names: Iterable[str], benchmark: str, metric: str) -> bool:
    base = metric.split(",", 1)[0]
    wanted = set(names)
    return bool(wanted & {metric, base, f"{benchmark}/{metric}", f"{benchmark}/{base}"})


def resolve_metric(benchmark: str, metric: str, settings: dict[str, Any],
                   declared: dict[str, tuple[Any, ...]]) -> tuple[bool, bool, str | None]:
    """``(lower_is_better, goal, item path)`` of a column: the suite's ``[leaderboard]`` lists, then the
    benchmark's declaration, then the name heuristic (a goal)."""
    from harness.core.registry import declared_metric

    decl = declared_metric(declared.get(benchmark, ()), metric)
    if _listed(settings.get("lower_is_better", []), benchmark, metric):
        lower = True
    elif _listed(settings.get("higher_is_better", []), benchmark, metric):
        lower = False
    elif decl is not None:
        lower = decl.lower_is_better
    else:
        lower = lower_is_better(metric)
    if _listed(settings.get("diagnostics", []), benchmark, metric):
        goal = False
    elif _listed(settings.get("goals", []), benchmark, metric):
        goal = True
    else:
        goal = decl is None or decl.role == "goal"
    item = None
    if decl is not None and decl.item:
        name, _, filt = metric.partition(",")
        item = decl.item.format(metric=metric, name=name, filter=filt)
    return lower, goal, item


# -- the table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    train: str
    benchmark: str
    version: str
    metric: str
    lower: bool
    goal: bool = True
    item: str | None = None  # dotted path of the per-item value in a record (None: no item-level values)

    @property
    def label(self) -> str:
        name, _, filt = self.metric.partition(",")
        text = f"{self.benchmark} v{self.version} / {name}" + (f" [{filt}]" if filt else "")
        text += f" (trained on {self.train})" if self.train != self.benchmark else ""
        return text + ("" if self.goal else " (diagnostic)")

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.metric}" + (f"@{self.train}" if self.train != self.benchmark else "")


@dataclass
class Cell:
    stat: Stat
    values: dict[int, float]  # seed -> value
    rank: float | None = None
    best: bool = False
    best_p: tuple[float, float] | None = None  # (raw, adjusted) p of top vs runner-up (the rank-1 cell only)

    @property
    def unranked(self) -> bool:
        """One seed: no interval, so no rank."""
        return self.stat.n < 2


@dataclass
class Row:
    label: str
    model: str
    cells: dict[str, Cell] = field(default_factory=dict)  # column key -> cell
    avg_rank: float | None = None
    delta: dict[str, Interval] = field(default_factory=dict)  # column key -> by-seed difference to the baseline
    item_delta: dict[str, Interval] = field(default_factory=dict)  # column key -> two-way item-level difference
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # goal column key -> p, p_adjusted, ...


@dataclass
class Leaderboard:
    sweep: dict[str, Any]
    columns: list[Column]
    rows: list[Row]
    baseline: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    code_note: str | None = None  # set when the sweep's cells ran under different code (harness.core.identity)
    item_notes: list[str] = field(default_factory=list)  # why an item-level comparison is missing or by position
    correction: str = "holm"
    best_family: int = 0  # goal columns whose top vs runner-up comparison has a p-value

    @property
    def multi_model(self) -> bool:
        return len({r.model for r in self.rows}) > 1


def _match_metrics(columns: list[Column], wanted: Sequence[str]) -> list[Column]:
    if not wanted or "*" in wanted:
        return columns
    out = []
    names = sorted({c.metric for c in columns} | {f"{c.benchmark}/{c.metric}" for c in columns})
    for w in wanted:
        hit = [c for c in columns if w in (c.metric, f"{c.benchmark}/{c.metric}", c.key, c.label)]
        if not hit:
            raise HarnessError(f"--metric {w}: no such metric in this sweep{did_you_mean(w, names)}; "
                               f"known: {', '.join(names)}")
        out += [c for c in hit if c not in out]
    return out


def build(store: Store, sweep_id: str | None = None, *, metrics: Sequence[str] | None = None,
          baseline: str | None = None, lower: Iterable[str] | None = None,
          settings: dict[str, Any] | None = None) -> Leaderboard:
    """The leaderboard of a sweep (default: the latest); ``metrics``/``baseline``/``lower`` default to
    the leaderboard settings stored with the sweep (its suite's ``[leaderboard]`` table as of its latest
    run, with the benchmarks' metric declarations); ``settings`` replaces those."""
    sweep = store.sweep(sweep_id)
    if settings is None:
        stored = store.leaderboard_settings(sweep["id"]) if hasattr(store, "leaderboard_settings") else None
        settings = stored if stored is not None else dict(sweep["suite"].get("leaderboard", {}))
    board = dict(settings)
    metrics = list(metrics) if metrics else list(board.get("metrics", []))
    baseline = baseline if baseline is not None else board.get("baseline")
    if lower is not None:
        board["lower_is_better"] = list(lower)
    correction = board.get("correction", "holm")
    if correction not in CORRECTIONS:
        raise HarnessError(f"[leaderboard] correction = {correction!r}: expected one of {', '.join(CORRECTIONS)}")
    cells = store.cells(sweep["id"])
    counts = {st: sum(c["status"] == st for c in cells) for st in ("done", "failed", "pending", "running")}

    finals = [m for m in store.final_metrics(sweep["id"]) if m["value"] is not None]
    declared = _declarations(board, {m["benchmark"] for m in finals})
    values: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    cols: dict[str, Column] = {}
    by_data = "train_data" in sweep["suite"]  # rows are (method, train data); columns the eval metrics
    for m in finals:
        key = (m["benchmark"] if by_data else m["train_benchmark"], m["benchmark"], m["benchmark_version"], m["metric"])
        col = cols.get(Column(*key, lower=False).key)
        if col is None:
            col = Column(*key, *resolve_metric(m["benchmark"], m["metric"], board, declared))
            cols[col.key] = col
        values.setdefault((m["label"], m["model"]), {}).setdefault(col.key, {})[m["seed"]] = m["value"]
    columns = _match_metrics(sorted(cols.values(), key=lambda c: (not c.goal, c.train, c.benchmark, c.metric)),
                             metrics)

    order = {}
    for c in cells:
        order.setdefault((c["label"], c["model"]), len(order))
    rows = []
    for key in sorted(values, key=lambda k: order.get(k, 0)):
        row = Row(*key)
        for col in columns:
            seeds = values[key].get(col.key)
            if seeds:
                row.cells[col.key] = Cell(Stat.of([seeds[s] for s in sorted(seeds)]), dict(sorted(seeds.items())))
        rows.append(row)
    best_family = rank(rows, columns, correction)
    rows.sort(key=lambda r: (r.avg_rank if r.avg_rank is not None else math.inf, order.get((r.label, r.model), 0)))
    lb = Leaderboard(sweep, columns, rows, baseline, counts, correction=correction, best_family=best_family)
    lb.code_note = code_note(cells)
    if baseline:
        _paired(lb, baseline)
        _paired_items(lb, store)
        _correct(lb)
    return lb


def code_note(cells: list[dict[str, Any]]) -> str | None:
    """A line saying the sweep mixes cells run under different code, or None (:func:`harness.core.identity.mixed_code`)."""
    from harness.core.identity import mixed_code

    return mixed_code(cells)


def tied(a: float, b: float) -> bool:
    """Whether two means are equal within the numerical tolerance."""
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def separation_p(best: Cell, other: Cell) -> float | None:
    """Two-sided p-value of ``best`` vs ``other``: the paired-by-seed t-test when they share >= 2 seeds,
    else Welch's (None: no test, e.g. one seed or no spread)."""
    common = sorted(set(best.values) & set(other.values))
    if len(common) >= 2:
        return by_seed([best.values[s] - other.values[s] for s in common]).p
    return welch_p(list(best.values.values()), list(other.values.values()))


def rank(rows: list[Row], columns: list[Column], correction: str = "holm") -> int:
    """Rank every goal column (ties within tolerance share the mean rank; n = 1 cells take none), mark the
    best where top beats runner-up after the correction over the goal columns, and average each row's goal
    ranks. Returns the size of the best-mark family."""
    family: list[tuple[Cell, float]] = []
    for col in columns:
        if not col.goal:
            continue
        present = [r for r in rows if col.key in r.cells and not r.cells[col.key].unranked]
        sign = 1.0 if col.lower else -1.0
        ordered = sorted(present, key=lambda r: sign * r.cells[col.key].stat.mean)
        i = 0
        while i < len(ordered):
            j = i
            while j + 1 < len(ordered) and tied(ordered[j + 1].cells[col.key].stat.mean,
                                                ordered[j].cells[col.key].stat.mean):
                j += 1
            for r in ordered[i : j + 1]:
                r.cells[col.key].rank = (i + j) / 2 + 1
            i = j + 1
        if len(ordered) >= 2 and ordered[0].cells[col.key].rank == 1:
            top, runner = ordered[0].cells[col.key], ordered[1].cells[col.key]
            p = separation_p(top, runner)
            if p is not None:
                family.append((top, p))
    for (cell, p), adj in zip(family, adjust([p for _, p in family], correction), strict=True):
        cell.best_p = (p, adj)
        cell.best = adj < ALPHA
    goals = [c.key for c in columns if c.goal]
    for r in rows:
        ranks = [r.cells[k].rank for k in goals if k in r.cells and r.cells[k].rank is not None]
        r.avg_rank = sum(ranks) / len(ranks) if ranks else None
    return len(family)


def _correct(lb: Leaderboard) -> None:
    """Holm/Bonferroni over the family of goal-metric differences to the baseline: each uses the headline
    (items like these) p-value where there is one, else the by-seed (these items) one."""
    family = []
    for r in lb.rows:
        for col in lb.columns:
            if not col.goal or col.key not in r.delta:
                continue
            iv = r.item_delta.get(col.key) or r.delta[col.key]
            if iv.p is None:
                iv = r.delta[col.key]
            if iv.p is not None:
                family.append((r, col.key, iv))
    adjusted = adjust([iv.p for _, _, iv in family], lb.correction)
    for (r, key, iv), adj in zip(family, adjusted, strict=True):
        r.tests[key] = {"p": iv.p, "p_adjusted": adj, "estimand": iv.estimand, "significant": adj < ALPHA}


def _paired(lb: Leaderboard, baseline: str) -> None:
    labels = sorted({r.label for r in lb.rows})
    base_rows = {r.model: r for r in lb.rows if r.label == baseline}
    if not base_rows:  # a method name that stands for exactly one label, e.g. "sft" for "sft(lr=0.001)"
        matching = sorted({r.label for r in lb.rows if r.label.split("(")[0] == baseline})
        if len(matching) > 1:
            raise HarnessError(f"--baseline {baseline}: ambiguous, it could be {', '.join(matching)}; "
                               f"give the full label")
        base_rows = {r.model: r for r in lb.rows if r.label in matching}
        if not base_rows:
            raise HarnessError(f"--baseline {baseline}: no such method label in this sweep"
                               f"{did_you_mean(baseline, labels)}; labels: {', '.join(labels)}")
    lb.baseline = next(iter(base_rows.values())).label
    for r in lb.rows:
        base = base_rows.get(r.model)
        if base is None or base is r:
            continue
        for col in lb.columns:
            mine, theirs = r.cells.get(col.key), base.cells.get(col.key)
            if mine is None or theirs is None:
                continue
            common = sorted(set(mine.values) & set(theirs.values))
            if common:
                r.delta[col.key] = by_seed([mine.values[s] - theirs.values[s] for s in common])


def _lookup(record: dict[str, Any], path: str) -> float | None:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def item_records(store: Store, sweep_id: str, *, by_data: bool = False
                 ) -> dict[tuple[str, str, str, str, int], list[dict[str, Any]]]:
    """(label, model, train, benchmark, seed) -> the final evaluation's records, in item order. ``train`` is
    the cell's training benchmark, or with ``by_data`` (a ``train_data`` suite, whose rows name the data and
    whose columns are keyed by the evaluation benchmark, as in :func:`build`) the evaluation benchmark."""
    rows = store.db.execute(
        """
        SELECT sc.label, c.model, c.benchmark AS train_benchmark, c.seed, r.benchmark, r.record_json
        FROM sweep_cells sc JOIN cells c ON c.id=sc.cell_id JOIN records r ON r.cell_id=c.id
        WHERE sc.sweep_id=? AND c.status='done' ORDER BY sc.position, r.idx
        """,
        (sweep_id,),
    ).fetchall()
    out: dict[tuple[str, str, str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        train = r["benchmark"] if by_data else r["train_benchmark"]
        key = (r["label"], r["model"], train, r["benchmark"], int(r["seed"]))
        out.setdefault(key, []).append(json.loads(r["record_json"]))
    return out


def _item_ids(records: list[dict[str, Any]]) -> list[str] | None:
    """The records' item ids in order, or None when any record has none (a store written before item ids)."""
    ids = [r.get("item_id") for r in records]
    return None if any(i is None for i in ids) else [str(i) for i in ids]


def _align(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]
           ) -> tuple[list[tuple[str, dict[str, Any], dict[str, Any]]] | None, str | None]:
    """``[(item id, my record, their record)]`` joined on item id, or ``(None, why not)``. Records without
    ids (older stores) pair by position when both cells have as many, reported as such."""
    a, b = _item_ids(mine), _item_ids(theirs)
    if a is None and b is None:
        if len(mine) != len(theirs):
            return None, f"different numbers of items ({len(mine)} vs {len(theirs)}) and no item ids"
        return [(str(i), x, y) for i, (x, y) in enumerate(zip(mine, theirs, strict=True))], "position"
    if a is None or b is None:
        return None, "only one of the two cells' records carries item ids"
    if len(set(a)) != len(a) or len(set(b)) != len(b):
        return None, "an item id repeats within a cell's records"
    if set(a) != set(b):
        common = len(set(a) & set(b))
        return None, f"they evaluated different items ({len(a)} vs {len(b)}, {common} in common)"
    by_id = dict(zip(b, theirs, strict=True))
    return [(i, x, by_id[i]) for i, x in zip(a, mine, strict=True)], None


def _paired_items(lb: Leaderboard, store: Store) -> None:
    """Item-level paired differences to the baseline, for columns whose benchmark declares an item field.
    Items pair by their ``item_id`` (the matrix's columns are item ids, NaN where a seed lacks one); a row
    whose cells evaluated different items than the baseline's is not paired and gets one line in
    ``lb.item_notes``. Records stored before item ids pair by position, with a note saying so."""
    import numpy as np

    item_cols = [c for c in lb.columns if c.item]
    if not item_cols or not lb.baseline:
        return
    recs = item_records(store, lb.sweep["id"], by_data="train_data" in lb.sweep["suite"])
    base_rows = {r.model: r for r in lb.rows if r.label == lb.baseline}
    by_position: set[str] = set()
    for r in lb.rows:
        base = base_rows.get(r.model)
        if base is None or base is r:
            continue
        who = f"{r.label}" + (f" ({r.model})" if lb.multi_model else "")
        for col in item_cols:
            if col.key not in r.delta:
                continue
            rows: dict[int, dict[str, float]] = {}
            why = None
            for seed in sorted(set(r.cells[col.key].values) & set(base.cells[col.key].values)):
                mine = recs.get((r.label, r.model, col.train, col.benchmark, seed), [])
                theirs = recs.get((base.label, base.model, col.train, col.benchmark, seed), [])
                if not mine or not theirs:
                    continue
                pairs, why = _align(mine, theirs)
                if pairs is None:
                    why = f"seed {seed}: {why}"
                    break
                if why == "position":
                    by_position.add(col.benchmark)
                    why = None
                row = {}
                for item, a, b in pairs:
                    x, y = _lookup(a, col.item), _lookup(b, col.item)
                    row[item] = math.nan if x is None or y is None else x - y
                rows[seed] = row
            if why is not None:
                lb.item_notes.append(f"{who} vs {lb.baseline} on {col.label}: not paired item by item: {why}")
                continue
            items = list(dict.fromkeys(i for row in rows.values() for i in row))
            matrix = [[row.get(i, math.nan) for i in items] for row in rows.values()]
            if matrix and not np.isnan(np.asarray(matrix)).all():
                r.item_delta[col.key] = twoway(matrix)
    for bench in sorted(by_position):
        lb.item_notes.append(f"{bench}: records carry no item ids (stored before item ids were recorded), so "
                             f"items are paired by position; rerun the cells to pair them by item id")


# -- rendering ---------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.4f}" if 1e-3 <= abs(x) < 1e4 or x == 0 else f"{x:.3g}"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "") + _num(x)


def _stat_text(s: Stat, signed: bool = False) -> str:
    mean = _signed(s.mean) if signed else _num(s.mean)
    if s.n < 2:
        return f"{mean} (n=1, unranked)" if not signed else f"{mean} (n=1, no interval)"
    return f"{mean} ± {_num(s.half or 0.0)} (n={s.n})"


def _interval_text(iv: Interval) -> str:
    """``+0.0500 ± 0.0300 (n=3)`` (with ``x 40 items`` for a two-way interval), or the reason there is none."""
    size = f"n={iv.seeds}" + (f" x {iv.items} items" if iv.items is not None else "")
    if iv.half is None:
        return f"{_signed(iv.mean)} ({size}, no interval{': ' + iv.why.split(': ', 1)[0] if iv.why else ''})"
    return f"{_signed(iv.mean)} ± {_num(iv.half)} ({size})"


def _p(x: float) -> str:
    return f"{x:.2g}" if x >= 1e-4 else "<1e-4"


def _delta_text(r: Row, key: str, correction: str) -> str:
    """A difference cell: the headline interval first (items like these, where there are per-item values),
    then the by-seed one (these items), then the test: p, adjusted p, and "significant" only after the
    correction."""
    parts = []
    if key in r.item_delta:
        parts.append("items like these: " + _interval_text(r.item_delta[key]))
    parts.append("these items: " + _interval_text(r.delta[key]))
    test = r.tests.get(key)
    if test is not None:
        text = f"p={_p(test['p'])}"
        if correction != "none":
            text += f", {correction} p={_p(test['p_adjusted'])}"
        parts.append(text + (" significant" if test["significant"] else ""))
    return "; ".join(parts)


def _latex_escape(s: str) -> str:
    s = re.sub(r"([_&%#$])", r"\\\1", s)
    return s.replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")


def _mark(text: str, fmt: str) -> str:
    if fmt == "markdown":
        return f"**{text}**"
    if fmt == "html":
        return f"<b>{text}</b>"
    if fmt == "latex":
        return rf"\textbf{{{text}}}"
    return f"{text} *"


def _esc(text: str, fmt: str) -> str:
    if fmt == "html":
        return html.escape(text)
    if fmt == "latex":
        return _latex_escape(text)
    return text


def _tables(lb: Leaderboard, fmt: str) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    arrow = {True: "↓", False: "↑"}
    heads = ["method", *(["model"] if lb.multi_model else []),
             *[_esc(f"{c.label} {arrow[c.lower]}", fmt) for c in lb.columns], "avg rank (goals)"]
    rows = []
    for r in lb.rows:
        line = [_esc(r.label, fmt), *([_esc(r.model, fmt)] if lb.multi_model else [])]
        for c in lb.columns:
            cell = r.cells.get(c.key)
            if cell is None:
                line.append("–")
                continue
            text = _esc(_stat_text(cell.stat) + (f" #{cell.rank:g}" if cell.rank is not None else ""), fmt)
            line.append(_mark(text, fmt) if cell.best else text)
        line.append(f"{r.avg_rank:.2f}" if r.avg_rank is not None else "–")
        rows.append(line)
    dheads, drows = [], []
    if lb.baseline:
        dheads = ["method", *(["model"] if lb.multi_model else []), *[_esc(c.label, fmt) for c in lb.columns]]
        for r in lb.rows:
            if not r.delta:
                continue
            cells = []
            for c in lb.columns:
                if c.key not in r.delta:
                    cells.append("–")
                    continue
                cells.append(_esc(_delta_text(r, c.key, lb.correction), fmt))
            drows.append([_esc(r.label, fmt), *([_esc(r.model, fmt)] if lb.multi_model else []), *cells])
    return heads, rows, dheads, drows


def to_json(lb: Leaderboard) -> dict[str, Any]:
    """A plain-data leaderboard (no timestamps: equal results give equal JSON)."""

    def stat(s: Stat) -> dict[str, Any]:
        return {"mean": s.mean, "ci95": s.half, "n": s.n}

    def best_p(c: Cell) -> dict[str, Any]:
        return {"best_p": c.best_p[0], "best_p_adjusted": c.best_p[1]} if c.best_p else {}

    return {
        "sweep": lb.sweep["id"],
        "name": lb.sweep["name"],
        "counts": lb.counts,
        "columns": [{"key": c.key, "label": c.label, "lower_is_better": c.lower,
                     "role": "goal" if c.goal else "diagnostic", "item_field": c.item} for c in lb.columns],
        "rows": [
            {
                "method": r.label,
                "model": r.model,
                "avg_rank": r.avg_rank,
                "cells": {c.key: {**stat(r.cells[c.key].stat), "rank": r.cells[c.key].rank,
                                  "best": r.cells[c.key].best, **best_p(r.cells[c.key]),
                                  "unranked": r.cells[c.key].unranked,
                                  "values": {str(s): v for s, v in r.cells[c.key].values.items()}}
                          for c in lb.columns if c.key in r.cells},
                **({"vs_baseline": {k: v.to_json() for k, v in r.delta.items()},
                    "vs_baseline_items": {k: v.to_json() for k, v in r.item_delta.items()},
                    "tests": r.tests} if lb.baseline else {}),
            }
            for r in lb.rows
        ],
        "baseline": lb.baseline,
        "item_notes": lb.item_notes,
        "correction": {"method": lb.correction, "alpha": ALPHA, "best_mark_family": lb.best_family,
                       "baseline_family": sum(len(r.tests) for r in lb.rows)},
    }


def correction_note(lb: Leaderboard) -> str:
    """The line under the table: the correction and the family sizes."""
    name = {"holm": "Holm step-down", "bonferroni": "Bonferroni", "none": "no correction"}[lb.correction]
    text = f"Multiple comparisons: {name}"
    text += f" at family-wise alpha {ALPHA:g}" if lb.correction != "none" else f" (each test at alpha {ALPHA:g})"
    text += f"; best mark: top vs runner-up per goal column (paired by seed, else Welch), family of {lb.best_family}"
    if lb.baseline:
        n = sum(len(r.tests) for r in lb.rows)
        text += f"; differences to {lb.baseline}: methods x goal metrics, family of {n}, \"significant\" = " \
                f"{'adjusted ' if lb.correction != 'none' else ''}p < {ALPHA:g}"
    return text + "."


def _diff_subtitle(lb: Leaderboard) -> str:
    """The title of the differences-to-baseline table: what each interval estimates."""
    sub = f"Difference to {lb.baseline}, paired by seed: mean ± 95% CI; \"these items\": t over the per-seed " \
          "differences (the benchmark's items fixed)"
    if any(r.item_delta for r in lb.rows):
        sub += "; \"items like these\" (the headline where shown): also paired item by item, two-way seeds x " \
               "items random-effects variance, t with seeds - 1 df (over seeds and items)"
    return sub


def _render_fitted(lb: Leaderboard, title: str, heads: list[str], rows: list[list[str]], dheads: list[str],
                   drows: list[list[str]], width: int) -> str:
    """The ``table`` format within ``width`` columns: the wide tables where they fit, else the long ones."""
    from tabulate import tabulate

    from harness.results.fit import long_table, widest_line, wrap

    keys = 2 if lb.multi_model else 1
    out = [wrap(title, width)]
    table = tabulate(rows, headers=heads, disable_numparse=True)
    if widest_line(table) > width:  # one row per method x metric; the average rank as a row of its own
        table = long_table(heads, rows, keys, value="mean ± 95% CI (n) #rank", width=width)
    out.append(table)
    if drows:
        out.append("\n" + wrap(_diff_subtitle(lb), width))
        diff = tabulate(drows, headers=dheads, disable_numparse=True)
        if widest_line(diff) > width:
            diff = long_table(dheads, drows, keys, value=f"difference to {lb.baseline}", width=width)
        out.append(diff)
    out.append("\n" + wrap(correction_note(lb), width))
    if lb.code_note:
        out.append("\n" + wrap(lb.code_note, width))
    out += [wrap(note, width) for note in lb.item_notes]
    return "\n".join(out)


def render(lb: Leaderboard, fmt: str = "table", *, width: int | None = None, wide: bool = False) -> str:
    """The leaderboard as text: table, markdown, csv, latex, html or json.

    ``width`` (``table`` only): a table wider than this is printed in the long format instead, one row per
    method x metric (:mod:`harness.results.fit`), and the title wrapped; ``wide`` keeps the wide table."""
    from tabulate import tabulate

    if fmt not in FORMATS:
        from harness.core.errors import unknown_name

        raise unknown_name("format", fmt, FORMATS, where="--format")
    if fmt == "json":
        return json.dumps(to_json(lb), indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "model", *[f"{c.label} {k}" for c in lb.columns for k in ("mean", "ci95", "n", "rank")],
                    "avg_rank"])
        for r in lb.rows:
            line: list[Any] = [r.label, r.model]
            for c in lb.columns:
                cell = r.cells.get(c.key)
                line += [cell.stat.mean, cell.stat.half if cell.stat.half is not None else "", cell.stat.n, cell.rank] \
                    if cell else ["", "", "", ""]
            w.writerow([*line, r.avg_rank])
        return buf.getvalue()
    tablefmt = {"table": "simple", "markdown": "pipe", "latex": "latex_raw", "html": "unsafehtml"}[fmt]
    heads, rows, dheads, drows = _tables(lb, fmt)
    title = f"Leaderboard of sweep {lb.sweep['id']}: mean ± 95% CI over seeds (n), #rank among goal metrics " \
            f"(ties within {REL_TOL:g} share a rank; n=1 unranked; diagnostics not ranked); best " \
            f"{'marked *' if fmt == 'table' else 'in bold'} only where it beats the next after the correction " \
            f"below; " \
            f"↑ higher / ↓ lower is better"
    if not rows:
        return f"sweep {lb.sweep['id']}: no finished cells yet ({lb.counts})"
    out = []
    if fmt == "table" and width is not None and not wide:
        return _render_fitted(lb, title, heads, rows, dheads, drows, width)
    if fmt == "table":
        out.append(title)
    elif fmt == "markdown":
        out.append(f"**{title}**\n")
    elif fmt == "html":
        out.append(f"<p>{html.escape(title)}</p>")
    out.append(tabulate(rows, headers=heads, tablefmt=tablefmt, disable_numparse=True))
    if drows:
        sub = _diff_subtitle(lb)
        out.append({"table": f"\n{sub}", "markdown": f"\n**{sub}**\n", "html": f"<p>{html.escape(sub)}</p>",
                    "latex": f"\n% {sub}"}[fmt])
        out.append(tabulate(drows, headers=dheads, tablefmt=tablefmt, disable_numparse=True))
    note = correction_note(lb)
    out.append({"table": f"\n{note}", "markdown": f"\n{note}", "html": f"<p>{html.escape(note)}</p>",
                "latex": f"\n% {note}"}[fmt])
    if lb.code_note:
        out.append(f"\n{lb.code_note}")
    for note in lb.item_notes:
        out.append(_esc(note, fmt) if fmt != "latex" else f"% {note}")
    return "\n".join(out)
