"""``harness compare SWEEP_A SWEEP_B``: the same rows and metrics of two sweeps side by side.

Rows are matched by (model, method label, training benchmark) and metrics by ``benchmark/metric``. Where
both sweeps have the same seeds of a row, the difference B - A is **paired** by seed (mean of per-seed
differences, 95% t-interval over them); otherwise it is the difference of the means with a Welch
interval (``paired`` says which). Each row has its two-sided p-value ``p`` (paired t or Welch) and
``p_adjusted``, Holm's step-down over all the rows compared (the family); ``significant`` is
``p_adjusted < 0.05`` (false where there is no test: fewer than two seeds, or no spread). Each metric's
direction (``lower_is_better``, from the benchmark's declaration or the suite's ``[leaderboard]`` table) gives
its arrow and whether B is ``better``. ``differ`` lists the settings of the two suites that differ
(``train.steps: 2 -> 3``), so two sweeps trained differently are never compared as if only the method changed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from harness.results.intervals import ALPHA, adjust, by_seed, welch_p
from harness.results.leaderboard import Stat
from harness.results.student_t import t_quantile
from harness.sweeps.store import Store


def _values(db: Store, sweep_id: str) -> tuple[str, dict[tuple[str, str, str, str], dict[int, float]]]:
    sid = db.sweep(sweep_id)["id"]
    out: dict[tuple[str, str, str, str], dict[int, float]] = defaultdict(dict)
    for r in db.final_metrics(sid):
        if r["value"] is not None:
            out[(r["model"], r["label"], r["train_benchmark"], f"{r['benchmark']}/{r['metric']}")][r["seed"]] = r["value"]
    return sid, out


def _welch(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    va = sum((x - sum(a) / len(a)) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - sum(b) / len(b)) ** 2 for x in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    df = (va + vb) ** 2 / ((va**2 / (len(a) - 1)) + (vb**2 / (len(b) - 1)))
    return t_quantile(0.975, df) * se


def compare(db: Store, sweep_a: str, sweep_b: str, metrics: Sequence[str] = ()) -> dict[str, Any]:
    """Rows ``{model, label, benchmark, metric, a, b, diff, half, n, paired, significant}`` for every row
    and metric the two sweeps share (``metrics``: only these names or benchmark/name)."""
    return compare_stores(db, sweep_a, db, sweep_b, metrics)


def compare_stores(db_a: Store, sweep_a: str, db_b: Store, sweep_b: str, metrics: Sequence[str] = ()) -> dict[str, Any]:
    """:func:`compare` of sweeps in two stores."""
    ida, va = _values(db_a, sweep_a)
    idb, vb = _values(db_b, sweep_b)
    rows = []
    for key in sorted(set(va) & set(vb)):
        model, label, bench, metric = key
        if metrics and metric not in metrics and metric.split("/", 1)[-1] not in metrics:
            continue
        a, b = va[key], vb[key]
        seeds = sorted(set(a) & set(b))
        paired = len(seeds) >= 1 and set(a) == set(b)
        if paired:
            d = Stat.of([b[s] - a[s] for s in seeds])
            diff, half, n = d.mean, d.half, d.n
            p = by_seed([b[s] - a[s] for s in seeds]).p
        else:
            la, lb = list(a.values()), list(b.values())
            diff, half, n = sum(lb) / len(lb) - sum(la) / len(la), _welch(la, lb), min(len(la), len(lb))
            p = welch_p(lb, la)
        rows.append({"model": model, "label": label, "benchmark": bench, "metric": metric,
                     "a": sum(a.values()) / len(a), "b": sum(b.values()) / len(b), "diff": diff, "half": half,
                     "n": n, "paired": paired, "p": p})
    tested = [r for r in rows if r["p"] is not None]
    for r, adj in zip(tested, adjust([r["p"] for r in tested], "holm"), strict=True):
        r["p_adjusted"] = adj
    for r in rows:
        r.setdefault("p_adjusted", None)
        r["significant"] = r["p_adjusted"] is not None and r["p_adjusted"] < ALPHA
    only_a = sorted({k[:3] for k in va} - {k[:3] for k in vb})
    only_b = sorted({k[:3] for k in vb} - {k[:3] for k in va})
    _directions(db_a, ida, rows)
    return {"a": ida, "b": idb, "rows": rows, "only_in_a": [list(k) for k in only_a],
            "only_in_b": [list(k) for k in only_b],
            "differ": settings_differ(db_a.sweep(ida)["suite"], db_b.sweep(idb)["suite"])}


def _directions(db: Store, sweep_id: str, rows: list[dict[str, Any]]) -> None:
    """Add ``lower_is_better`` and ``better`` ("B", "A" or None: the interval covers 0) to every row."""
    from harness.results.leaderboard import _declarations, resolve_metric

    settings = db.leaderboard_settings(sweep_id) or {}
    declared = _declarations(settings, {r["metric"].split("/", 1)[0] for r in rows})
    for r in rows:
        bench, _, metric = r["metric"].partition("/")
        lower = resolve_metric(bench, metric, settings, declared)[0]
        r["lower_is_better"] = lower
        r["better"] = None if not r["significant"] else ("B" if (r["diff"] < 0) == lower else "A")


# Suite keys that name or present a sweep without changing what its cells compute.
_NOT_SETTINGS = ("name", "leaderboard", "description")


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def settings_differ(suite_a: dict[str, Any], suite_b: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{key, a, b}]`` for every suite setting (dotted key) whose value differs between the two sweeps
    (a key one suite lacks shows as None: its default)."""
    fa = _flatten({k: v for k, v in (suite_a or {}).items() if k not in _NOT_SETTINGS})
    fb = _flatten({k: v for k, v in (suite_b or {}).items() if k not in _NOT_SETTINGS})
    return [{"key": k, "a": fa.get(k), "b": fb.get(k)} for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def render(result: dict[str, Any], fmt: str = "table") -> str:
    """The comparison as a table (tabulate format names: table -> simple, markdown, html, ...)."""
    from tabulate import tabulate

    def num(x: float | None) -> str:
        return "" if x is None else f"{x:.4g}"

    def arrow(r: dict[str, Any]) -> str:
        return {True: " ↓", False: " ↑"}.get(r.get("lower_is_better"), "")  # type: ignore[arg-type]

    table = [[r["label"], r["metric"] + arrow(r), num(r["a"]), num(r["b"]),
              num(r["diff"]) + (f" ± {num(r['half'])}" if r["half"] is not None else ""),
              r["n"], "paired" if r["paired"] else "unpaired",
              "" if r["p"] is None else f"{r['p']:.2g} / {r['p_adjusted']:.2g}",
              r.get("better") or ("not significant" if r["p"] is not None else "? (one seed)")]
             for r in result["rows"]]
    head = [f"A: {result['a']}", f"B: {result['b']}"]
    text = tabulate(table, headers=["method", "metric (↑ higher / ↓ lower is better)", "A", "B", "B - A (95% CI)",
                                    "seeds", "pairing", "p / Holm p", f"better (Holm, {len(result['rows'])} rows)"],
                    tablefmt={"table": "simple", "markdown": "github"}.get(fmt, fmt))
    extra = []
    if result.get("differ"):
        extra.append("settings that differ (A -> B): " + "; ".join(
            f"{d['key']}: {d['a']!r} -> {d['b']!r}" for d in result["differ"]))
        extra.append("  (a difference may come from these settings, not only from the method)")
    for side in ("a", "b"):
        if result[f"only_in_{side}"]:
            extra.append(f"only in {side.upper()}: " + "; ".join(" / ".join(map(str, k))
                                                                  for k in result[f"only_in_{side}"]))
    return "\n".join([*head, "", text, *extra])
