"""Plots and an HTML report of a sweep: ``results/reports/<sweep>/index.html``.

- ``bars_<n>.png``: per leaderboard column, one bar per method (x model) with its 95% CI as error bar;
- ``curves_<benchmark>.png``: training loss per step (steps of all rounds in sequence), per method the
  mean over seeds;
- ``index.html``: the sweep's counts, the leaderboard (and the paired baseline table), the images.

matplotlib is imported lazily with the Agg backend (no display needed).
"""

from __future__ import annotations

import html
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.leaderboard import Leaderboard, build, render
from harness.store import Store


def default_report_dir(store: Store, sweep_id: str) -> Path:
    """``<store folder>/reports/<sweep id>``."""
    return store.path.parent / "reports" / sweep_id


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80]


def _plt() -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_charts(lb: Leaderboard, out: Path) -> list[Path]:
    """One bar chart per leaderboard column."""
    plt = _plt()
    paths = []
    for i, col in enumerate(lb.columns):
        rows = [r for r in lb.rows if col.key in r.cells]
        if not rows:
            continue
        labels = [r.label + (f"\n{r.model}" if lb.multi_model else "") for r in rows]
        means = [r.cells[col.key].stat.mean for r in rows]
        errs = [r.cells[col.key].stat.half or 0.0 for r in rows]
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.6))
        colors = ["tab:orange" if r.cells[col.key].best else "tab:blue" for r in rows]
        ax.bar(range(len(rows)), means, yerr=errs, capsize=4, color=colors)
        ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{col.label} ({'lower' if col.lower else 'higher'} is better)", fontsize=9)
        ax.set_ylabel(col.metric)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / f"bars_{i:02d}_{_slug(col.key)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def training_curves(store: Store, sweep_id: str, out: Path) -> list[Path]:
    """Loss per step, mean over seeds per method, one figure per (training benchmark, model)."""
    plt = _plt()
    series: dict[tuple[str, str], dict[str, dict[int, dict[int, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict)))
    for s in store.step_losses(sweep_id):
        if s["loss"] is None:
            continue
        per_seed = series[(s["train_benchmark"], s["model"])][s["label"]][s["seed"]]
        per_seed[len(per_seed)] = s["loss"]  # steps of all rounds, in order
    multi_model = len({m for _, m in series}) > 1
    paths = []
    for (bench, model), by_label in sorted(series.items()):
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        for label, seeds in by_label.items():
            steps = sorted(set().union(*[set(v) for v in seeds.values()]))
            mean = [sum(v[k] for v in seeds.values() if k in v) / sum(k in v for v in seeds.values()) for k in steps]
            ax.plot(steps, mean, label=f"{label} (n={len(seeds)})")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{bench}" + (f" / {model}" if multi_model else "") + ": loss, mean over seeds", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"curves_{_slug(bench)}{'_' + _slug(model) if multi_model else ''}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(store: Store, sweep_id: str | None = None, out: Path | None = None, *,
                 metrics: list[str] | None = None, baseline: str | None = None) -> Path:
    """Write the plots and ``index.html``; returns the HTML file's path."""
    lb = build(store, sweep_id, metrics=metrics, baseline=baseline)
    sid = lb.sweep["id"]
    out = out or default_report_dir(store, sid)
    out.mkdir(parents=True, exist_ok=True)
    bars = bar_charts(lb, out)
    curves = training_curves(store, sid, out)
    runs = store.runs(sid)
    last = runs[-1]["summary"] if runs and runs[-1]["summary"] else {}
    counts = ", ".join(f"{v} {k}" for k, v in lb.counts.items() if v)
    cache = last.get("warm_start", {})
    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Sweep {html.escape(sid)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;"
        "font-size:13px} td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} "
        "td:first-child{text-align:left} img{max-width:48%;margin:4px}</style></head><body>",
        f"<h1>Sweep {html.escape(sid)}</h1>",
        f"<p>suite: {html.escape(str(lb.sweep.get('suite_path') or ''))}; cells: {html.escape(counts)}"
        + (f"; last run: {last.get('done', 0)} done, {last.get('failed', 0)} failed, wall "
           f"{last.get('wall_s', 0):.1f} s, warm-start cache {cache.get('hit', 0)} hits / {cache.get('miss', 0)} "
           f"misses" if last else "") + "</p>",
        "<h2>Leaderboard</h2>",
        render(lb, "html"),
        "<h2>Metrics</h2>",
        *[f"<img src='{p.name}' alt='{html.escape(p.stem)}'>" for p in bars],
        "<h2>Training curves</h2>",
        *[f"<img src='{p.name}' alt='{html.escape(p.stem)}'>" for p in curves],
        "</body></html>",
    ]
    index = out / "index.html"
    index.write_text("\n".join(page), encoding="utf-8")
    return index
