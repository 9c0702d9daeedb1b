"""Honest leaderboards: tolerance ties, goal metrics only in the average rank, n = 1 rows unranked, a best
mark only where the interval separates it, the item-level paired bootstrap, and the suite's leaderboard
settings honoured on a rerun against an existing store. A real SQLite store filled by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.core.registry import BenchmarkSpec, MetricSpec, declared_metric
from harness.results.intervals import twoway
from harness.results.leaderboard import build, paired_bootstrap, render, resolve_metric
from harness.results.student_t import t_cdf, t_quantile
from harness.sweeps.store import Store, owner_token
from harness.sweeps.sweep import suite_settings


def fill(path, values, *, records=None, board=None, benchmark="bench") -> Store:
    """``values``: label -> seed -> {metric: value}; ``records``: label -> seed -> per-item records."""
    store = Store(path)
    rows, finished = [], {}
    for label, seeds in values.items():
        for seed, metrics in seeds.items():
            cid = f"{label}-{seed}"
            rows.append({"id": cid, "base_id": cid, "label": label, "plugins": {},
                         "config": {"model": "tiny:nano", "method": label, "benchmark": benchmark,
                                    "benchmark_version": "1", "seed": seed}})
            finished[cid] = {
                "config": {"benchmark": benchmark, "benchmark_version": "1"},
                "rounds": [{"round": 1, "metrics": {f"{benchmark}/{k}": v for k, v in metrics.items()}}],
                "records": [{"benchmark": benchmark, **r} for r in (records or {}).get(label, {}).get(seed, [])],
                "steps": [], "timings": {}, "provenance": {},
            }
    store.add_sweep("s-1", "s", None, {"leaderboard": board or {}}, rows)
    for cid, rec in finished.items():
        store.claim(cid, owner_token())
        store.finish(cid, rec)
    return store


DECLARED = {"bench": [{"name": "reward", "lower_is_better": False, "role": "goal", "item": "reward"},
                      {"name": "kl_ref", "lower_is_better": True, "role": "diagnostic", "item": None}]}


def test_means_equal_within_tolerance_tie(tmp_path):
    # AVA-d equals SFT to 1e-8 on the one-token task: the same rank, no best mark for either
    values = {"sft": {s: {"reward": 0.6751 + 0.01 * s} for s in range(5)},
              "ava-d": {s: {"reward": 0.6751 + 0.01 * s + (4e-9 if s % 2 else -1e-9)} for s in range(5)},
              "spin": {s: {"reward": 0.4 + 0.01 * s} for s in range(5)}}
    store = fill(tmp_path / "h.db", values)
    lb = build(store, settings={"declared": DECLARED})
    rows = {r.label: r.cells["bench/reward"] for r in lb.rows}
    assert rows["sft"].stat.mean != rows["ava-d"].stat.mean  # not exactly equal ...
    assert rows["sft"].rank == rows["ava-d"].rank == 1.5 and rows["spin"].rank == 3  # ... yet tied
    assert not rows["sft"].best and not rows["ava-d"].best


def test_best_only_when_the_interval_separates_it(tmp_path):
    clear = {"a": {s: {"reward": 0.9 + 0.001 * s * s} for s in range(3)},
             "b": {s: {"reward": 0.5 + 0.001 * s} for s in range(3)}}
    lb = build(fill(tmp_path / "h.db", clear), settings={"declared": DECLARED})
    assert lb.rows[0].label == "a" and lb.rows[0].cells["bench/reward"].best
    assert "**0.9017 ± " in render(lb, "markdown")
    # a constant difference over seeds has no spread to test with: no p-value, no best mark
    flat = {"a": {s: {"reward": 0.9 + 0.001 * s} for s in range(3)}, "b": {s: {"reward": 0.5 + 0.001 * s} for s in range(3)}}
    lb = build(fill(tmp_path / "h3.db", flat), settings={"declared": DECLARED})
    assert lb.rows[0].cells["bench/reward"].best_p is None and not lb.rows[0].cells["bench/reward"].best
    close = {"a": {0: {"reward": 0.9}, 1: {"reward": 0.5}, 2: {"reward": 0.7}},
             "b": {0: {"reward": 0.6}, 1: {"reward": 0.7}, 2: {"reward": 0.6}}}
    lb = build(fill(tmp_path / "h2.db", close), settings={"declared": DECLARED})
    assert lb.rows[0].cells["bench/reward"].rank == 1 and not lb.rows[0].cells["bench/reward"].best
    assert "**" not in render(lb, "markdown").split("\n", 2)[2]


def test_diagnostics_are_shown_but_not_ranked_nor_averaged(tmp_path):
    # the Tajwar case: dpo is mid-table on reward but closest to pi_ref; with kl_ref counted as a goal it
    # would lead the average rank
    values = {"online": {s: {"reward": 0.99 + 0.001 * s, "kl_ref": 6.1 + 0.01 * s} for s in range(3)},
              "dpo": {s: {"reward": 0.15 + 0.01 * s, "kl_ref": 0.1 + 0.01 * s} for s in range(3)},
              "mid": {s: {"reward": 0.50 + 0.01 * s, "kl_ref": 3.0 + 0.01 * s} for s in range(3)}}
    store = fill(tmp_path / "h.db", values)
    lb = build(store, settings={"declared": DECLARED})
    kl = next(c for c in lb.columns if c.metric == "kl_ref")
    assert not kl.goal and kl.lower and "(diagnostic)" in kl.label
    assert [r.label for r in lb.rows] == ["online", "mid", "dpo"]
    assert [r.avg_rank for r in lb.rows] == [1.0, 2.0, 3.0]
    assert all(r.cells["bench/kl_ref"].rank is None and not r.cells["bench/kl_ref"].best for r in lb.rows)
    assert "0.1100 ± " in render(lb, "table")  # shown
    # the same sweep with kl_ref declared a goal (the old average): dpo's kl rank lifts it
    lb = build(store, settings={"declared": DECLARED, "goals": ["kl_ref"]})
    assert {r.label: r.avg_rank for r in lb.rows} == {"online": 2.0, "mid": 2.0, "dpo": 2.0}
    data = json.loads(render(build(store, settings={"declared": DECLARED}), "json"))
    assert {c["key"]: c["role"] for c in data["columns"]} == {"bench/reward": "goal", "bench/kl_ref": "diagnostic"}


def test_single_seed_rows_are_unranked_and_labelled(tmp_path):
    values = {"a": {0: {"reward": 0.9}},  # best mean, one seed
              "b": {s: {"reward": 0.5 + 0.01 * s} for s in range(3)},
              "c": {s: {"reward": 0.3 + 0.01 * s} for s in range(3)}}
    lb = build(fill(tmp_path / "h.db", values), settings={"declared": DECLARED})
    rows = {r.label: r for r in lb.rows}
    a = rows["a"].cells["bench/reward"]
    assert a.rank is None and not a.best and a.stat.half is None and a.unranked
    assert rows["a"].avg_rank is None and lb.rows[-1].label == "a"  # sorted after the ranked rows
    assert rows["b"].cells["bench/reward"].rank == 1 and rows["c"].cells["bench/reward"].rank == 2
    text = render(lb, "table")
    assert "0.9000 (n=1, unranked)" in text and "0.9000 (n=1, unranked) #" not in text
    assert json.loads(render(lb, "json"))["rows"][-1]["cells"]["bench/reward"]["unranked"] is True


def hand_bootstrap(d: list[list[float]], reps: int, seed: int) -> tuple[float, float]:
    """The documented procedure written out with loops: per resample, seeds then items, from one rng."""
    rng = np.random.default_rng(seed)
    n_seeds, n_items = len(d), len(d[0])
    means = []
    for _ in range(reps):
        seeds = [int(x) for x in rng.integers(0, n_seeds, size=n_seeds)] if n_seeds > 1 else [0]
        items = [int(x) for x in rng.integers(0, n_items, size=n_items)]
        total = sum(d[s][i] for s in seeds for i in items)
        means.append(total / (len(seeds) * len(items)))
    means.sort()
    lo, hi = (float(np.quantile(means, q)) for q in (0.025, 0.975))
    return lo, hi


def hand_twoway(d: list[list[float]]) -> tuple[float, float, float]:
    """The documented two-way interval written out with loops: (mean, half-width, p)."""
    n_s, n_i = len(d), len(d[0])
    grand = sum(map(sum, d)) / (n_s * n_i)
    rows = [sum(r) / n_i for r in d]
    cols = [sum(d[s][i] for s in range(n_s)) / n_s for i in range(n_i)]
    ms_s = n_i * sum((r - grand) ** 2 for r in rows) / (n_s - 1)
    ms_i = n_s * sum((c - grand) ** 2 for c in cols) / (n_i - 1)
    ms_e = sum((d[s][i] - rows[s] - cols[i] + grand) ** 2 for s in range(n_s) for i in range(n_i)) \
        / ((n_s - 1) * (n_i - 1))
    se = math.sqrt((max(ms_s, ms_e) + max(ms_i - ms_e, 0.0)) / (n_s * n_i))
    return grand, t_quantile(0.975, n_s - 1) * se, 2 * (1 - t_cdf(abs(grand / se), n_s - 1))


def test_item_level_two_way_interval_matches_a_hand_computed_one(tmp_path):
    rng = np.random.default_rng(7)
    n_items, seeds = 12, (0, 1, 2)
    base = {s: rng.integers(0, 2, n_items).astype(float) for s in seeds}  # 0/1 correctness per item
    better = {s: np.maximum(base[s], rng.integers(0, 2, n_items)) for s in seeds}
    recs = {"sft": {s: [{"idx": i, "reward": float(base[s][i])} for i in range(n_items)] for s in seeds},
            "gsil": {s: [{"idx": i, "reward": float(better[s][i])} for i in range(n_items)] for s in seeds}}
    values = {lab: {s: {"reward": float(np.mean([r["reward"] for r in recs[lab][s]]))} for s in seeds}
              for lab in recs}
    store = fill(tmp_path / "h.db", values, records=recs)
    lb = build(store, baseline="sft", settings={"declared": DECLARED})
    row = next(r for r in lb.rows if r.label == "gsil")
    got = row.item_delta["bench/reward"]
    d = [[float(better[s][i] - base[s][i]) for i in range(n_items)] for s in seeds]
    mean, half, p = hand_twoway(d)
    assert got.mean == pytest.approx(mean) and got.items == n_items and got.seeds == 3 and got.df == 2
    assert got.half == pytest.approx(half, rel=1e-9) and got.p == pytest.approx(p, rel=1e-6)
    assert got.estimand == "items like these, over seeds and items"
    assert row.delta["bench/reward"].estimand == "these items, over seeds"
    # the one comparison of the family uses the headline interval's p
    assert row.tests["bench/reward"]["p"] == pytest.approx(p, rel=1e-6)
    assert row.tests["bench/reward"]["p_adjusted"] == pytest.approx(p, rel=1e-6)
    # one seed: no interval, and the table says so instead of printing a narrower one
    one = twoway([d[0]])
    assert one.half is None and one.p is None and "1 seed" in one.why
    # the old bootstrap (no longer printed) still matches its documented procedure
    boot = paired_bootstrap([d[0]], reps=500, seed=3)
    assert (boot.lo, boot.hi) == (pytest.approx(hand_bootstrap([d[0]], 500, 3)[0]),
                                  pytest.approx(hand_bootstrap([d[0]], 500, 3)[1]))
    # both intervals side by side in the text and the JSON, each naming its estimand
    text = render(lb, "table")
    assert f"items like these: {mean:+.4f} ± {half:.4f} (n=3 x 12 items)" in text and "these items: +" in text
    data = json.loads(render(lb, "json"))
    g = next(r for r in data["rows"] if r["method"] == "gsil")
    assert set(g["vs_baseline"]) == set(g["vs_baseline_items"]) == {"bench/reward"}
    assert g["vs_baseline_items"]["bench/reward"]["ci95_low"] == pytest.approx(mean - half, rel=1e-9)
    assert g["vs_baseline_items"]["bench/reward"]["estimand"] == "items like these, over seeds and items"
    # no item-level comparison where the benchmark declares no item field
    lb = build(store, baseline="sft", settings={"declared": {"bench": [{"name": "reward"}]}})
    assert all(not r.item_delta for r in lb.rows) and any(r.delta for r in lb.rows)


def test_metric_declarations_and_suite_overrides():
    specs = (MetricSpec("exact_match", item="correct.{filter}"), MetricSpec("*_stderr", True, "diagnostic"))
    assert declared_metric(specs, "exact_match,strict-match") is specs[0]
    assert declared_metric(specs, "exact_match_stderr,flexible-extract") is specs[1]
    assert declared_metric(specs, "answered,strict-match") is None
    declared = {"gsm8k": specs}
    assert resolve_metric("gsm8k", "exact_match,strict-match", {}, declared) == (False, True, "correct.strict-match")
    assert resolve_metric("gsm8k", "exact_match_stderr,x", {}, declared)[:2] == (True, False)
    # the suite's table wins over the declaration, and an undeclared name falls back to the name rule
    board = {"lower_is_better": ["gsm8k/exact_match"], "diagnostics": ["exact_match"]}
    assert resolve_metric("gsm8k", "exact_match,strict-match", board, declared)[:2] == (True, False)
    assert resolve_metric("other", "val_loss", {}, declared) == (True, True, None)
    assert resolve_metric("heldout-nll", "nll", {}, {})[0] is True  # an undeclared negative log-likelihood
    with pytest.raises(TypeError, match="role must be one of"):
        MetricSpec("x", role="secondary")
    with pytest.raises(TypeError, match="metrics must be a tuple of harness.core.registry.MetricSpec"):
        BenchmarkSpec(name="b", description="", paper="", evaluate=lambda ctx: None, metrics=("reward",))


def test_every_builtin_benchmark_declares_its_metrics():
    import importlib.metadata as md

    from harness.core.plugins import get_host

    reg = get_host().registry
    # the built-in plugins: the package's own entry points; every benchmark they register, from the registry
    plugins = {ep.name for ep in md.entry_points(group="harness") if ep.value.startswith("alignment_harness_plugins.")}
    builtin = [name for (kind, name), origin in reg.origin.items() if kind == "benchmark" and origin in plugins]
    assert {"didactic-r1", "gsm8k", "heldout-nll", "humaneval", "mt-bench", "lm-eval"} <= set(builtin)
    for name in builtin:
        assert reg.benchmark(name).metrics, f"benchmark {name} declares no metrics"
    assert declared_metric(reg.benchmark("heldout-nll").metrics, "nll").lower_is_better
    assert declared_metric(reg.benchmark("heldout-nll").metrics, "nll").item == "nll"
    tajwar = reg.benchmark("didactic-r1")
    assert declared_metric(tajwar.metrics, "kl_ref").role == "diagnostic"
    assert declared_metric(tajwar.metrics, "expected_reward").role == "goal"
    assert declared_metric(reg.benchmark("gsm8k").metrics, "answered,strict-match").role == "diagnostic"


def test_rerun_with_a_changed_leaderboard_table_is_honoured(tmp_path):
    from harness.suite.expand import load_suite

    path = tmp_path / "s.toml"
    base = ('name = "lb"\nmodels = ["tiny:nano"]\nbenchmarks = ["didactic-r1"]\nseeds = [0]\n'
            '[methods.sft]\n')
    path.write_text(base)
    from harness.core.plugins import get_host

    suite = load_suite(path, get_host())

    store = Store(tmp_path / "h.db")
    settings = suite_settings(suite, get_host().registry)
    assert settings["declared"]["didactic-r1"] and "lower_is_better" not in settings
    store.add_sweep(suite.id, suite.name, str(path), suite.data, [c.row() for c in suite.cells])
    store.save_leaderboard_settings(suite.id, settings)
    # the rerun: same cells (same sweep id), a [leaderboard] table added; add_sweep keeps the old suite
    path.write_text(base + '[leaderboard]\nlower_is_better = ["entropy"]\ndiagnostics = ["reverse_kl"]\n')
    again = load_suite(path, get_host())
    assert again.id == suite.id
    store.add_sweep(again.id, again.name, str(path), again.data, [c.row() for c in again.cells])
    assert store.sweep(suite.id)["suite"].get("leaderboard") is None  # what the store kept ...
    store.save_leaderboard_settings(again.id, suite_settings(again, get_host().registry))
    kept = store.leaderboard_settings(suite.id)  # ... and what the leaderboard reads
    assert kept["lower_is_better"] == ["entropy"] and kept["diagnostics"] == ["reverse_kl"]
    assert resolve_metric("didactic-r1", "entropy", kept, {})[0] is True
