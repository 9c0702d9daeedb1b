"""An HTML report of a sweep: ``results/<sweep id>/report.html`` (next to the store), with its PNGs.

- the sweep's counts, the last invocation's summary (wall time, cache hits and misses per kind), the
  leaderboard (and the paired baseline table);
- ``bars_<benchmark>.png``: per training benchmark, one panel per leaderboard column, one bar per method
  (x model) with its 95% CI as error bar;
- ``loss_<benchmark>.png``: training loss per step (the steps of all rounds in sequence), per method the
  mean over seeds with a 95% CI band;
- ``rounds_<benchmark>.png``: the leaderboard's metrics (e.g. reward and KL) after each round (round 0:
  before training), per method the mean over seeds with a 95% CI band;
- ``actions_<benchmark>.png``: where a benchmark's records carry a distribution over actions
  (``action_probs``, e.g. the didactic bandit), the final distribution per method, averaged over the
  records (states) and seeds, against the records' ``pi_ref_probs`` and ``expert_probs`` when present.

matplotlib is imported lazily with the Agg backend (no display needed). Every <img> of the page is a
file written next to it.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.core.cache import KINDS, describe_stats
from harness.results.leaderboard import Column, Leaderboard, Stat, build, render
from harness.sweeps.store import Store

REPORT_NAME = "report.html"


def default_report_dir(store: Store, sweep_id: str) -> Path:
    """``<store folder>/<sweep id>`` (``results/<sweep>/`` for the default store)."""
    return store.path.parent / sweep_id


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "x"


def _plt() -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt: Any, n: int, *, width: float = 5.0, height: float = 3.4, ncols: int = 3) -> tuple[Any, list[Any]]:
    cols = min(ncols, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _series_name(label: str, model: str, multi_model: bool) -> str:
    return f"{label} / {model}" if multi_model else label


def _band(ax: Any, xs: list[float], stats: list[Stat], name: str, marker: str | None = None) -> None:
    means = [s.mean for s in stats]
    line = ax.plot(xs, means, label=name, marker=marker, markersize=3)[0]
    if any(s.half is not None for s in stats):
        lo = [s.mean - (s.half or 0.0) for s in stats]
        hi = [s.mean + (s.half or 0.0) for s in stats]
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)


def _by_train(lb: Leaderboard) -> dict[str, list[Column]]:
    out: dict[str, list[Column]] = defaultdict(list)
    for col in lb.columns:
        out[col.train].append(col)
    return out


# -- figures -----------------------------------------------------------------------------------------------


def charted(col: Column) -> bool:
    """Whether a column gets a chart of its own: not a standard error (``exact_match_stderr,...``), a
    property of the metric's own chart, not a result."""
    return "_stderr" not in col.metric


def panel_title(text: str, width_in: float, fontsize: float = 9.0) -> str:
    """``text`` wrapped to a panel ``width_in`` inches wide (about 0.6 em a character): titles of panels
    side by side never run into each other or off the figure."""
    import textwrap

    chars = max(12, int(width_in * 72 / (0.6 * fontsize)) - 2)
    return textwrap.fill(text, chars)


def bar_figure(plt: Any, lb: Leaderboard, cols: list[Column], train: str) -> Any:
    """The bar chart figure of one training benchmark: one panel per column, a bar per method."""
    n_rows = max(len([r for r in lb.rows if c.key in r.cells]) for c in cols)
    width = max(4.5, 0.9 * n_rows + 2.0)
    fig, axes = _grid(plt, len(cols), width=width, ncols=2)
    for ax, col in zip(axes, cols, strict=True):
        rows = [r for r in lb.rows if col.key in r.cells]
        names = [_series_name(r.label, r.model, lb.multi_model) for r in rows]
        means = [r.cells[col.key].stat.mean for r in rows]
        errs = [r.cells[col.key].stat.half or 0.0 for r in rows]
        colors = ["tab:orange" if r.cells[col.key].best and len(rows) > 1 else "tab:blue" for r in rows]
        ax.bar(range(len(rows)), means, yerr=errs, capsize=4, color=colors)
        ax.set_xticks(range(len(rows)), names, rotation=25, ha="right", fontsize=8)
        ax.set_title(panel_title(f"{col.label} ({'lower' if col.lower else 'higher'} is better)", width - 0.8),
                     fontsize=9)
        ax.set_ylabel(col.metric.split(",")[0])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"trained on {train}: mean ± 95% CI over seeds", fontsize=10)
    return fig


def bar_charts(lb: Leaderboard, out: Path) -> list[Path]:
    """Per training benchmark, one panel per leaderboard column (standard errors excepted): a bar per
    method with its 95% CI."""
    plt = _plt()
    paths = []
    for train, cols in sorted(_by_train(lb).items()):
        cols = [c for c in cols if charted(c) and any(c.key in r.cells for r in lb.rows)]
        if not cols:
            continue
        fig = bar_figure(plt, lb, cols, train)
        paths.append(_save(plt, fig, out / f"bars_{_slug(train)}.png"))
    return paths


def _steps(store: Store, sweep_id: str) -> list[dict[str, Any]]:
    return store.step_losses(sweep_id)


def loss_curves(store: Store, sweep_id: str, out: Path) -> list[Path]:
    """Training loss per step (all rounds in sequence), mean over seeds ± 95% CI, one figure per
    (training benchmark, model)."""
    plt = _plt()
    series: dict[tuple[str, str], dict[str, dict[int, dict[int, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict)))
    for s in _steps(store, sweep_id):
        if s["loss"] is None:
            continue
        per_seed = series[(s["train_benchmark"], s["model"])][s["label"]][s["seed"]]
        per_seed[len(per_seed)] = s["loss"]  # steps of all rounds, in order
    multi_model = len({m for _, m in series}) > 1
    paths = []
    for (bench, model), by_label in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(7.0, 3.8))
        for label, seeds in by_label.items():
            steps = sorted(set().union(*[set(v) for v in seeds.values()]))
            stats = [Stat.of([v[k] for v in seeds.values() if k in v]) for k in steps]
            _band(ax, [k + 1 for k in steps], stats, f"{label} (n={len(seeds)})")
        ax.set_xlabel("step (all rounds)")
        ax.set_ylabel("training loss")
        ax.set_title(f"{bench}" + (f" / {model}" if multi_model else "") + ": loss, mean ± 95% CI over seeds",
                     fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        name = f"loss_{_slug(bench)}{'_' + _slug(model) if multi_model else ''}.png"
        paths.append(_save(plt, fig, out / name))
    return paths


def round_metrics(store: Store, sweep_id: str) -> list[dict[str, Any]]:
    """Every round's metrics of the done cells of a sweep."""
    rows = store.db.execute(
        """
        SELECT c.id AS cell_id, sc.label, c.model, c.benchmark AS train_benchmark, c.seed,
               m.round, m.benchmark, m.metric, m.value
        FROM sweep_cells sc JOIN cells c ON c.id=sc.cell_id JOIN metrics m ON m.cell_id=c.id
        WHERE sc.sweep_id=? AND c.status='done' ORDER BY sc.position, m.round
        """,
        (sweep_id,),
    ).fetchall()
    return [dict(r) for r in rows]


def round_curves(lb: Leaderboard, store: Store, out: Path) -> list[Path]:
    """The leaderboard's metrics after each round, mean over seeds ± 95% CI; one figure per training
    benchmark, one panel per metric."""
    plt = _plt()
    cols = {c.key: c for c in lb.columns}
    # column key -> (label, model) -> round -> seed -> value
    data: dict[str, dict[tuple[str, str], dict[int, dict[int, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict)))
    for m in round_metrics(store, lb.sweep["id"]):
        if m["value"] is None:
            continue
        key = f"{m['benchmark']}/{m['metric']}" + (
            f"@{m['train_benchmark']}" if m["train_benchmark"] != m["benchmark"] else "")
        if key in cols:
            data[key][(m["label"], m["model"])][m["round"]][m["seed"]] = m["value"]
    paths = []
    for train, tcols in sorted(_by_train(lb).items()):
        tcols = [c for c in tcols if charted(c) and data.get(c.key)]
        if not tcols:
            continue
        fig, axes = _grid(plt, len(tcols), width=5.2, ncols=2)
        for ax, col in zip(axes, tcols, strict=True):
            for (label, model), by_round in data[col.key].items():
                rounds = sorted(by_round)
                stats = [Stat.of(list(by_round[r].values())) for r in rounds]
                n = max(s.n for s in stats)
                _band(ax, rounds, stats, f"{_series_name(label, model, lb.multi_model)} (n={n})", marker="o")
            ax.set_xlabel("round (0: before training)")
            ax.set_ylabel(col.metric.split(",")[0])
            ax.set_title(panel_title(f"{col.label} ({'lower' if col.lower else 'higher'} is better)", 4.4),
                         fontsize=9)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"trained on {train}: evaluation after each round, mean ± 95% CI over seeds", fontsize=10)
        paths.append(_save(plt, fig, out / f"rounds_{_slug(train)}.png"))
    return paths


def action_records(store: Store, sweep_id: str) -> list[dict[str, Any]]:
    """The final records of the done cells of a sweep that carry an ``action_probs`` distribution."""
    rows = store.db.execute(
        """
        SELECT c.id AS cell_id, sc.label, c.model, c.benchmark AS train_benchmark, c.seed,
               r.benchmark AS benchmark, r.record_json
        FROM sweep_cells sc JOIN cells c ON c.id=sc.cell_id JOIN records r ON r.cell_id=c.id
        WHERE sc.sweep_id=? AND c.status='done' AND r.record_json LIKE '%"action_probs"%'
        ORDER BY sc.position, r.idx
        """,
        (sweep_id,),
    ).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        rec = json.loads(d.pop("record_json"))
        if isinstance(rec.get("action_probs"), list) and rec["action_probs"]:
            out.append({**d, "record": rec})
    return out


def _mean(vectors: list[list[float]]) -> list[float]:
    n = min(len(v) for v in vectors)
    return [sum(v[i] for v in vectors) / len(vectors) for i in range(n)]


def action_distributions(store: Store, sweep_id: str, out: Path) -> list[Path]:
    """Final action distributions (mean over records/states, then seeds) per method against the
    records' reference distributions; one figure per (training benchmark, evaluated benchmark)."""
    recs = action_records(store, sweep_id)
    if not recs:
        return []
    plt = _plt()
    # (train, bench) -> (label, model) -> seed -> [per-record distributions]
    groups: dict[tuple[str, str], dict[tuple[str, str], dict[int, list[list[float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    refs: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in recs:
        g = (r["train_benchmark"], r["benchmark"])
        groups[g][(r["label"], r["model"])][r["seed"]].append(r["record"]["action_probs"])
        for name in ("pi_ref_probs", "expert_probs"):
            if isinstance(r["record"].get(name), list):
                refs.setdefault(g, {}).setdefault(name, r["record"][name])
    multi_model = len({m for g in groups.values() for _, m in g}) > 1
    paths = []
    for (train, bench), by_method in sorted(groups.items()):
        fig, axes = _grid(plt, len(by_method), width=4.6, height=3.0, ncols=3)
        ref = refs.get((train, bench), {})
        for ax, ((label, model), seeds) in zip(axes, by_method.items(), strict=True):
            probs = _mean([_mean(per_state) for per_state in seeds.values()])
            xs = list(range(len(probs)))
            ax.bar(xs, probs, width=1.0, color="tab:blue", alpha=0.75, label=f"policy (n={len(seeds)} seeds)")
            if "pi_ref_probs" in ref:
                ax.plot(range(len(ref["pi_ref_probs"])), ref["pi_ref_probs"], color="0.35", linestyle="--",
                        linewidth=1.2, label="pi_ref")
            if "expert_probs" in ref:
                ax.plot(range(len(ref["expert_probs"])), ref["expert_probs"], color="tab:red", linestyle=":",
                        linewidth=1.4, label="p*")
            ax.set_title(_series_name(label, model, multi_model), fontsize=9)
            ax.set_xlabel("action")
            ax.set_ylabel("probability")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        where = bench if bench == train else f"{bench} (trained on {train})"
        fig.suptitle(f"{where}: final action distribution, mean over states and seeds", fontsize=10)
        name = f"actions_{_slug(bench)}" + (f"_on_{_slug(train)}" if bench != train else "") + ".png"
        paths.append(_save(plt, fig, out / name))
    return paths


# -- the page ----------------------------------------------------------------------------------------------


def _summary(lb: Leaderboard, runs: list[dict[str, Any]]) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in lb.counts.items() if v) or "no cells"
    parts = [f"suite: {lb.sweep.get('suite_path') or '-'}", f"cells: {counts}"]
    last = runs[-1]["summary"] if runs and runs[-1].get("summary") else None
    if last:
        ws = last.get("warm_start", {})
        parts.append(f"last run: {last.get('done', 0)} done, {last.get('failed', 0)} failed, wall time "
                     f"{float(last.get('wall_s', 0)):.1f} s")
        parts.append(f"cache: warm start {ws.get('hit', 0)} hits, {ws.get('miss', 0)} misses; "
                     + describe_stats(last.get("cache", {}), [k for k in KINDS if k != "warmstart"]))
    return "<p>" + "<br>".join(html.escape(p) for p in parts) + "</p>"


def _images(paths: list[Path], empty: str) -> list[str]:
    if not paths:
        return [f"<p><i>{html.escape(empty)}</i></p>"]
    return [f'<p><img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}"></p>' for p in paths]


def write_report(store: Store, sweep_id: str | None = None, out: Path | None = None, *,
                 metrics: list[str] | None = None, baseline: str | None = None) -> Path:
    """Write the PNGs and the HTML page; returns the page's path.

    ``out``: a folder (the page is ``report.html`` in it) or an ``.html`` file; default
    ``<store folder>/<sweep id>/report.html``."""
    lb = build(store, sweep_id, metrics=metrics, baseline=baseline)
    sid = lb.sweep["id"]
    if out is not None and out.suffix.lower() in (".html", ".htm"):
        folder, page_path = out.parent, out
    else:
        folder = out or default_report_dir(store, sid)
        page_path = folder / REPORT_NAME
    folder.mkdir(parents=True, exist_ok=True)
    bars = bar_charts(lb, folder)
    losses = loss_curves(store, sid, folder)
    rounds = round_curves(lb, store, folder)
    actions = action_distributions(store, sid, folder)
    page = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Sweep {html.escape(sid)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1500px} table{border-collapse:collapse;"
        "font-size:13px} td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} "
        "td:first-child{text-align:left} img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>Sweep {html.escape(sid)}</h1>",
        _summary(lb, store.runs(sid)),
        "<h2>Leaderboard</h2>",
        '<div style="overflow-x:auto">', render(lb, "html"), "</div>",  # any number of metric columns
        "<h2>Final metrics</h2>",
        *_images(bars, "no finished cells yet"),
        "<h2>Learning curves: loss per step</h2>",
        *_images(losses, "no training steps recorded"),
        "<h2>Learning curves: evaluation per round</h2>",
        *_images(rounds, "no per-round metrics recorded"),
    ]
    if actions:
        page += ["<h2>Final action distributions</h2>",
                 "<p>Mean over states and seeds, against pi_ref (dashed) and the expert p* (dotted).</p>",
                 *_images(actions, "")]
    from harness.results.export import export_html
    from harness.results.report_cells import cells_section, items_section

    items_page = page_path.with_name(page_path.stem + "-items.html")
    export_html(store, sid, items_page)  # every item of every evaluated round, linked from the table below
    page += items_section(store, sid, items_page.name)
    page += cells_section(store, sid)
    page.append("</body></html>")
    page_path.write_text("\n".join(page) + "\n", encoding="utf-8")
    return page_path
