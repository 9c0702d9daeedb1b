"""The leaderboard: mean ± 95% CI over seeds per method and benchmark metric, ranks, a paired baseline.

- Rows are method labels (``dpo(beta=0.05)``) x model; columns are benchmark metrics labelled
  ``<benchmark> v<version> / <metric>`` (an lm-eval style ``metric,filter`` shows as ``metric [filter]``;
  a metric of an extra ``eval`` benchmark adds ``(trained on <benchmark>)``). Values are each cell's
  last evaluated round (the final evaluation).
- A value is ``mean ± h (n=…)`` with ``h`` the half-width of the Student-t 95% interval over seeds
  (``t_{0.975, n-1} · s / √n``; no interval for n = 1). :func:`t_quantile` is exact (incomplete beta).
- Higher is better, except for metrics whose name has a token ``kl``, ``loss``, ``error``/``err``,
  ``ppl``/``perplexity`` or ``regret`` (``kl_ref``, ``forward_kl``, ``val_loss``), and names listed in the
  suite's ``[leaderboard] lower_is_better``. Each column ranks the rows (1 = best, ties share the mean
  rank); ``avg rank`` averages a row's ranks; rows are sorted by it; the best value per column is
  marked (``*`` in text, bold in markdown, LaTeX and HTML).
- ``--baseline METHOD``: per row and column, the difference to the baseline row of the same model,
  paired by seed (seeds both have), with its mean and t-interval.
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

from harness.errors import HarnessError, did_you_mean
from harness.store import Store

FORMATS = ("table", "markdown", "csv", "latex", "html", "json")
LOWER_TOKENS = {"kl", "loss", "error", "err", "ppl", "perplexity", "regret"}


# -- statistics ---------------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (``t_quantile(0.975, 4) = 2.776``), by bisection on the CDF."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("need 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


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


def lower_is_better(metric: str, extra: Iterable[str] = ()) -> bool:
    """See the module docstring: kl/loss/error/ppl/regret tokens, or a name the suite lists."""
    name = metric.split(",", 1)[0]
    if metric in extra or name in extra:
        return True
    return bool(set(re.split(r"[^a-z0-9]+", name.lower())) & LOWER_TOKENS)


# -- the table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    train: str
    benchmark: str
    version: str
    metric: str
    lower: bool

    @property
    def label(self) -> str:
        name, _, filt = self.metric.partition(",")
        text = f"{self.benchmark} v{self.version} / {name}" + (f" [{filt}]" if filt else "")
        return text + (f" (trained on {self.train})" if self.train != self.benchmark else "")

    @property
    def key(self) -> str:
        return f"{self.benchmark}/{self.metric}" + (f"@{self.train}" if self.train != self.benchmark else "")


@dataclass
class Cell:
    stat: Stat
    values: dict[int, float]  # seed -> value
    rank: float | None = None
    best: bool = False


@dataclass
class Row:
    label: str
    model: str
    cells: dict[str, Cell] = field(default_factory=dict)  # column key -> cell
    avg_rank: float | None = None
    delta: dict[str, Stat] = field(default_factory=dict)  # column key -> paired difference to the baseline


@dataclass
class Leaderboard:
    sweep: dict[str, Any]
    columns: list[Column]
    rows: list[Row]
    baseline: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

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
          baseline: str | None = None, lower: Iterable[str] | None = None) -> Leaderboard:
    """The leaderboard of a sweep (default: the latest); ``metrics``/``baseline``/``lower`` default to
    the suite's ``[leaderboard]`` table."""
    sweep = store.sweep(sweep_id)
    board = sweep["suite"].get("leaderboard", {})
    metrics = list(metrics) if metrics else list(board.get("metrics", []))
    baseline = baseline if baseline is not None else board.get("baseline")
    lower = list(lower) if lower is not None else list(board.get("lower_is_better", []))
    cells = store.cells(sweep["id"])
    counts = {st: sum(c["status"] == st for c in cells) for st in ("done", "failed", "pending", "running")}

    values: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    cols: dict[str, Column] = {}
    by_data = "train_data" in sweep["suite"]  # rows are (method, train data); columns the eval metrics
    for m in store.final_metrics(sweep["id"]):
        if m["value"] is None:
            continue
        col = Column(m["benchmark"] if by_data else m["train_benchmark"], m["benchmark"], m["benchmark_version"],
                     m["metric"], lower_is_better(m["metric"], lower))
        cols.setdefault(col.key, col)
        values.setdefault((m["label"], m["model"]), {}).setdefault(col.key, {})[m["seed"]] = m["value"]
    columns = _match_metrics(sorted(cols.values(), key=lambda c: (c.train, c.benchmark, c.metric)), metrics)

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
    _rank(rows, columns)
    rows.sort(key=lambda r: (r.avg_rank if r.avg_rank is not None else math.inf, order.get((r.label, r.model), 0)))
    lb = Leaderboard(sweep, columns, rows, baseline, counts)
    if baseline:
        _paired(lb, baseline)
    return lb


def _rank(rows: list[Row], columns: list[Column]) -> None:
    for col in columns:
        present = [r for r in rows if col.key in r.cells]
        sign = 1.0 if col.lower else -1.0
        ordered = sorted(present, key=lambda r: sign * r.cells[col.key].stat.mean)
        i = 0
        while i < len(ordered):
            j = i
            while j + 1 < len(ordered) and ordered[j + 1].cells[col.key].stat.mean == ordered[i].cells[col.key].stat.mean:
                j += 1
            for r in ordered[i : j + 1]:
                r.cells[col.key].rank = (i + j) / 2 + 1
                r.cells[col.key].best = i == 0
            i = j + 1
    for r in rows:
        ranks = [c.rank for c in r.cells.values() if c.rank is not None]
        r.avg_rank = sum(ranks) / len(ranks) if ranks else None


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
                r.delta[col.key] = Stat.of([mine.values[s] - theirs.values[s] for s in common])


# -- rendering ---------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.4f}" if 1e-3 <= abs(x) < 1e4 or x == 0 else f"{x:.3g}"


def _stat_text(s: Stat, signed: bool = False) -> str:
    mean = ("+" if signed and s.mean >= 0 else "") + _num(s.mean)
    pm = f" ± {_num(s.half)}" if s.half is not None else ""
    return f"{mean}{pm} (n={s.n})"


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
             *[_esc(f"{c.label} {arrow[c.lower]}", fmt) for c in lb.columns], "avg rank"]
    rows = []
    for r in lb.rows:
        line = [_esc(r.label, fmt), *([_esc(r.model, fmt)] if lb.multi_model else [])]
        for c in lb.columns:
            cell = r.cells.get(c.key)
            if cell is None:
                line.append("–")
                continue
            text = _esc(_stat_text(cell.stat) + (f" #{cell.rank:g}" if cell.rank is not None else ""), fmt)
            line.append(_mark(text, fmt) if cell.best and len(lb.rows) > 1 else text)
        line.append(f"{r.avg_rank:.2f}" if r.avg_rank is not None else "–")
        rows.append(line)
    dheads, drows = [], []
    if lb.baseline:
        dheads = ["method", *(["model"] if lb.multi_model else []), *[_esc(c.label, fmt) for c in lb.columns]]
        for r in lb.rows:
            if not r.delta:
                continue
            drows.append([_esc(r.label, fmt), *([_esc(r.model, fmt)] if lb.multi_model else []),
                          *[_esc(_stat_text(r.delta[c.key], signed=True), fmt) if c.key in r.delta else "–"
                            for c in lb.columns]])
    return heads, rows, dheads, drows


def to_json(lb: Leaderboard) -> dict[str, Any]:
    """A plain-data leaderboard (no timestamps: equal results give equal JSON)."""

    def stat(s: Stat) -> dict[str, Any]:
        return {"mean": s.mean, "ci95": s.half, "n": s.n}

    return {
        "sweep": lb.sweep["id"],
        "name": lb.sweep["name"],
        "counts": lb.counts,
        "columns": [{"key": c.key, "label": c.label, "lower_is_better": c.lower} for c in lb.columns],
        "rows": [
            {
                "method": r.label,
                "model": r.model,
                "avg_rank": r.avg_rank,
                "cells": {c.key: {**stat(r.cells[c.key].stat), "rank": r.cells[c.key].rank,
                                  "best": r.cells[c.key].best,
                                  "values": {str(s): v for s, v in r.cells[c.key].values.items()}}
                          for c in lb.columns if c.key in r.cells},
                **({"vs_baseline": {k: stat(v) for k, v in r.delta.items()}} if lb.baseline else {}),
            }
            for r in lb.rows
        ],
        "baseline": lb.baseline,
    }


def render(lb: Leaderboard, fmt: str = "table") -> str:
    """The leaderboard as text: table, markdown, csv, latex, html or json."""
    from tabulate import tabulate

    if fmt not in FORMATS:
        from harness.errors import unknown_name

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
    title = f"Leaderboard of sweep {lb.sweep['id']}: mean ± 95% CI over seeds (n), #rank; " \
            f"{'best marked *' if fmt == 'table' else 'best in bold'}; ↑ higher / ↓ lower is better"
    if not rows:
        return f"sweep {lb.sweep['id']}: no finished cells yet ({lb.counts})"
    out = []
    if fmt == "table":
        out.append(title)
    elif fmt == "markdown":
        out.append(f"**{title}**\n")
    elif fmt == "html":
        out.append(f"<p>{html.escape(title)}</p>")
    out.append(tabulate(rows, headers=heads, tablefmt=tablefmt, disable_numparse=True))
    if drows:
        sub = f"Difference to {lb.baseline}, paired by seed: mean ± 95% CI (n)"
        out.append({"table": f"\n{sub}", "markdown": f"\n**{sub}**\n", "html": f"<p>{html.escape(sub)}</p>",
                    "latex": f"\n% {sub}"}[fmt])
        out.append(tabulate(drows, headers=dheads, tablefmt=tablefmt, disable_numparse=True))
    return "\n".join(out)
