"""``harness plan``: per comparison to the baseline, the smallest difference detectable at 80% power with the
sweep's seeds and items, and the seeds needed for ``--effect``, from the sweep's variance components. A real
SQLite store filled by hand with per-item records; the real CLI in a subprocess. (That the predictions
match simulated power is tests/test_coverage.py::test_plan_predictions_match_simulated_power.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.results.intervals import mean_squares
from harness.results.leaderboard import build
from harness.results.plan import plan
from harness.results.student_t import t_quantile
from tests.conftest import run_cli
from tests.test_leaderboard_honest import DECLARED, fill


def make_store(path, n_seeds=4, n_items=30):
    rng = np.random.default_rng(5)
    base = rng.normal(0.5, 0.3, (n_seeds, n_items))
    item = rng.normal(0.0, 0.3, n_items)  # item-by-method effects
    better = base + 0.1 + rng.normal(0, 0.2, (n_seeds, 1)) + item + rng.normal(0, 0.1, (n_seeds, n_items))
    recs = {"sft": {s: [{"idx": i, "reward": float(base[s, i])} for i in range(n_items)] for s in range(n_seeds)},
            "gsil": {s: [{"idx": i, "reward": float(better[s, i])} for i in range(n_items)] for s in range(n_seeds)}}
    values = {lab: {s: {"reward": float(np.mean([r["reward"] for r in recs[lab][s]]))} for s in range(n_seeds)}
              for lab in recs}
    store = fill(path, values, records=recs, board={"baseline": "sft"})
    store.save_leaderboard_settings("s-1", {"baseline": "sft", "declared": DECLARED})
    return store, better - base


def test_plan_from_the_variance_components(tmp_path):
    store, d = make_store(tmp_path / "h.db")
    (row,) = plan(build(store), effect=0.05)
    n_s, n_i = d.shape
    ms_s, ms_i, ms_e = mean_squares(d)
    s2a, s2b, s2e = max(ms_s - ms_e, 0) / n_i, max(ms_i - ms_e, 0) / n_s, ms_e
    se = math.sqrt(s2a / n_s + s2b / n_i + s2e / (n_s * n_i))
    factor = t_quantile(0.975, n_s - 1) + t_quantile(0.8, n_s - 1)
    assert row["method"] == "gsil" and row["seeds"] == n_s and row["items"] == n_i
    assert row["mde_population"] == pytest.approx(factor * se)
    assert row["mde_these_items"] == pytest.approx(factor * math.sqrt(s2a / n_s + s2e / (n_s * n_i)))
    assert row["mde_these_items"] < row["mde_population"]
    # 0.05 over items: the item variance alone (s2b / 30 items) is too large; on these items, a seed count
    floor = 1.96 * math.sqrt(s2b / n_i)
    assert floor > 0.05 and row["seeds_for_effect_population"] is None
    assert row["why_no_seeds_population"] == "more items needed"
    need = row["seeds_for_effect_these_items"]
    assert need is not None and need > n_s
    assert (t_quantile(0.975, need - 1) + t_quantile(0.8, need - 1)) * math.sqrt(s2a / need + s2e / (need * n_i)) <= 0.05


def test_plan_cli(tmp_path):
    make_store(tmp_path / "h.db")
    out = run_cli("plan", "--store", str(tmp_path / "h.db"), "--effect", "0.5")
    assert out.returncode == 0, out.stderr
    assert "detectable at 80% power: items like these" in out.stdout and "gsil" in out.stdout
    data = json.loads(run_cli("plan", "--store", str(tmp_path / "h.db"), "--effect", "0.5", "--json").stdout)
    assert data["baseline"] == "sft" and data["comparisons"][0]["seeds_for_effect_population"] >= 2
    bad = run_cli("plan", "--store", str(tmp_path / "h.db"), "--effect", "-1")
    assert bad.returncode == 2 and "--effect -1: give a difference > 0" in bad.stderr
