"""Multiple-comparison control on the leaderboard: Holm's step-down (and Bonferroni) against hand-computed
values, the family the leaderboard shows (methods x goal metrics vs the baseline; top vs runner-up per goal
column for the best mark), raw and adjusted p-values in the JSON, the note under the table, and the suite
key ``leaderboard.correction``. A real SQLite store filled by hand (tests/test_leaderboard_honest.fill)."""

from __future__ import annotations

import json

import pytest

from harness.core.errors import HarnessError
from harness.results.intervals import adjust, by_seed
from harness.results.leaderboard import build, render
from tests.test_leaderboard_honest import fill

DECL = {"bench": [{"name": m, "lower_is_better": False, "role": "goal", "item": None} for m in ("r1", "r2", "r3")]
        + [{"name": "kl", "lower_is_better": True, "role": "diagnostic", "item": None}]}


def test_holm_and_bonferroni_by_hand():
    ps = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert adjust(ps, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(ps, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust(ps, "none") == ps
    assert adjust([0.5, 0.9], "holm") == pytest.approx([1.0, 1.0])  # capped at 1
    assert adjust([], "holm") == []
    with pytest.raises(ValueError, match="correction must be one of"):
        adjust(ps, "sidak")
    from harness.results.intervals import CORRECTIONS
    from harness.suite.parse import CORRECTIONS as SUITE_CORRECTIONS

    assert CORRECTIONS == SUITE_CORRECTIONS


def _values(diffs_by_metric: dict[str, list[float]]) -> dict[str, dict[int, dict[str, float]]]:
    """Two methods: 'a' = base + the given per-seed differences, metric by metric."""
    base = {s: {m: 0.5 + 0.01 * s for m in diffs_by_metric} for s in range(3)}
    return {"a": {s: {m: 0.5 + 0.01 * s + d[s] for m, d in diffs_by_metric.items()} for s in range(3)},
            "base": base}


def test_the_best_mark_and_significant_only_after_the_correction(tmp_path):
    # three goal columns, each top vs runner-up at raw p = 0.020 (paired t, 2 df): each separates on its own,
    # none after Holm (smallest adjusted = 3 * 0.020 = 0.06)
    diffs = {"r1": [0.15, 0.2, 0.25], "r2": [0.15, 0.2, 0.25], "r3": [0.15, 0.2, 0.25], "kl": [0.15, 0.2, 0.25]}
    store = fill(tmp_path / "h.db", _values(diffs))
    raw = by_seed([0.15, 0.2, 0.25]).p
    assert raw == pytest.approx(0.0202, abs=1e-4)
    lb = build(store, baseline="base", settings={"declared": DECL})
    a = next(r for r in lb.rows if r.label == "a")
    for m in ("r1", "r2", "r3"):
        cell = a.cells[f"bench/{m}"]
        assert cell.rank == 1 and not cell.best
        assert cell.best_p == (pytest.approx(raw), pytest.approx(min(1.0, 3 * raw)))
        assert a.tests[f"bench/{m}"] == {"p": pytest.approx(raw), "p_adjusted": pytest.approx(3 * raw),
                                         "estimand": "these items, over seeds", "significant": False}
    assert "bench/kl" not in a.tests  # a diagnostic is not in the family
    text = render(lb, "table")
    diff_table = text.split("Difference to base")[1].split("Multiple comparisons")[0]
    assert "p=" in diff_table and " significant" not in diff_table and "#1 *" not in text
    assert f"p={raw:.2g}, holm p={3 * raw:.2g}" in text
    assert "Holm step-down at family-wise alpha 0.05; best mark: top vs runner-up per goal column (paired by seed, " \
           "else Welch), family of 3; differences to base: methods x goal metrics, family of 3" in text
    data = json.loads(render(lb, "json"))
    assert data["correction"] == {"method": "holm", "alpha": 0.05, "best_mark_family": 3, "baseline_family": 3}
    row = next(r for r in data["rows"] if r["method"] == "a")
    assert row["tests"]["bench/r1"]["p"] == pytest.approx(raw)
    assert row["tests"]["bench/r1"]["p_adjusted"] == pytest.approx(3 * raw)
    assert row["cells"]["bench/r2"]["best_p_adjusted"] == pytest.approx(3 * raw)
    assert row["vs_baseline"]["bench/r3"]["estimand"] == "these items, over seeds"
    # no correction: every column separates; Bonferroni here equals Holm (equal p-values)
    lb = build(store, baseline="base", settings={"declared": DECL, "correction": "none"})
    a = next(r for r in lb.rows if r.label == "a")
    assert all(a.cells[f"bench/{m}"].best and a.tests[f"bench/{m}"]["significant"] for m in ("r1", "r2", "r3"))
    text = render(lb, "table")
    assert "#1 *" in text and "p=0.02 significant" in text and "no correction" in text
    lb = build(store, baseline="base", settings={"declared": DECL, "correction": "bonferroni"})
    assert not any(c.best for r in lb.rows for c in r.cells.values())


def test_holm_steps_down_over_methods_x_metrics(tmp_path):
    # p-values of different sizes: Holm keeps the strongest, Bonferroni's fixed factor loses one more
    diffs = {"r1": [0.19, 0.2, 0.21], "r2": [0.1, 0.2, 0.3], "r3": [0.16, 0.2, 0.24]}
    store = fill(tmp_path / "h.db", _values(diffs))
    raw = {m: by_seed(d).p for m, d in diffs.items()}
    order = sorted(raw, key=raw.get)  # r1, r3, r2
    holm = {}
    running = 0.0
    for k, m in enumerate(order):
        running = max(running, min(1.0, (3 - k) * raw[m]))
        holm[m] = running
    lb = build(store, baseline="base", settings={"declared": DECL})
    a = next(r for r in lb.rows if r.label == "a")
    assert {m: a.tests[f"bench/{m}"]["p_adjusted"] for m in diffs} == pytest.approx(holm)
    assert a.tests["bench/r1"]["significant"] and not a.tests["bench/r2"]["significant"]
    # r3: raw 0.0126 -> Holm 2 x 0.0126 = 0.025 significant; Bonferroni 3 x 0.0126 = 0.038 too; check both
    lb_b = build(store, baseline="base", settings={"declared": DECL, "correction": "bonferroni"})
    b = next(r for r in lb_b.rows if r.label == "a")
    assert {m: b.tests[f"bench/{m}"]["p_adjusted"] for m in diffs} == pytest.approx(
        {m: min(1.0, 3 * p) for m, p in raw.items()})


def test_a_bad_correction_is_one_clear_line(tmp_path):
    store = fill(tmp_path / "h.db", _values({"r1": [0.1, 0.2, 0.3]}))
    with pytest.raises(HarnessError, match=r"\[leaderboard\] correction = 'sidak': expected one of holm, bonferroni"):
        build(store, settings={"correction": "sidak"})
    from harness.core.plugins import get_host
    from harness.suite.expand import load_suite

    path = tmp_path / "s.toml"
    path.write_text('models = ["tiny:nano"]\nbenchmarks = ["didactic-r1"]\nseeds = [0]\n[methods.sft]\n'
                    '[leaderboard]\ncorrection = "sidak"\n')
    with pytest.raises(HarnessError, match=r"leaderboard.correction.*expected one of 'holm', 'bonferroni', 'none', "
                                           r"got 'sidak'"):
        load_suite(path, get_host())
    path.write_text(path.read_text().replace("sidak", "bonferroni"))
    assert load_suite(path, get_host()).leaderboard["correction"] == "bonferroni"
