"""The leaderboard (t intervals, ranks, baseline, formats) and the report, on a hand-filled store."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from harness.core.errors import HarnessError
from harness.results.leaderboard import Stat, build, lower_is_better, render
from harness.results.report import write_report
from harness.results.student_t import t_cdf, t_quantile
from harness.sweeps.store import Store, owner_token

# label -> seed -> (reward, kl)
VALUES = {
    "sft": {0: (0.5, 1.0), 1: (0.6, 1.2), 2: (0.7, 1.1)},
    "dpo(beta=0.1)": {0: (0.8, 0.3), 1: (0.9, 0.5), 2: (0.7, 0.4)},
    "dpo(beta=0.5)": {0: (0.2, 0.1), 1: (0.3, 0.2)},
}


@pytest.mark.parametrize(("df", "q"), [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (1000, 1.962)])
def test_t_quantile_known_values(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-3)


def test_t_distribution_basics():
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    assert t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: 1/2 + atan(1)/pi
    assert t_quantile(0.025, 4) == pytest.approx(-2.776, abs=1e-3)
    assert t_quantile(0.95, 10) == pytest.approx(1.812, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_stat():
    s = Stat.of([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.n == 3
    assert s.half == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-3)
    assert Stat.of([5.0]).half is None


def test_lower_is_better():
    assert all(lower_is_better(m) for m in ("kl_ref", "forward_kl", "val_loss", "error_rate", "ppl", "KL"))
    assert not any(lower_is_better(m) for m in ("expected_reward", "accuracy", "entropy", "kleene", "acc,none"))
    assert lower_is_better("entropy", ["entropy"])


def fill(path) -> Store:
    store = Store(path)
    rows, records = [], {}
    for label, seeds in VALUES.items():
        for seed, (reward, kl) in seeds.items():
            cid = f"{label}-{seed}"
            method = label.split("(")[0]
            rows.append({"id": cid, "base_id": cid, "label": label, "plugins": {},
                         "config": {"model": "tiny:nano", "method": method, "benchmark": "bench",
                                    "benchmark_version": "3", "seed": seed, "evals": [["bench", "3", {}]]}})
            records[cid] = {
                "config": {"benchmark": "bench", "benchmark_version": "3", "evals": [["bench", "3", {}]]},
                "rounds": [{"round": 0, "metrics": {"bench/reward": 0.0, "bench/kl_ref": 0.0}},
                           {"round": 1, "metrics": {"bench/reward": reward, "bench/kl_ref": kl}}],
                "steps": [{"round": 0, "step": i, "loss": 1.0 - 0.1 * i + 0.01 * seed} for i in range(5)],
                "records": [], "timings": {}, "warm_start": "hit", "provenance": {},
            }
    rows.append({"id": "failed-0", "base_id": "x", "label": "broken", "plugins": {},
                 "config": {"model": "tiny:nano", "method": "broken", "benchmark": "bench", "seed": 0}})
    store.add_sweep("demo-1234", "demo", "suites/demo.toml",
                    {"leaderboard": {"metrics": ["reward"], "baseline": "sft"}}, rows)
    for cid, rec in records.items():
        store.claim(cid, owner_token())
        store.finish(cid, rec)
    store.claim("failed-0", owner_token())
    store.fail("failed-0", "RuntimeError: boom")
    return store


def test_build_ranks_ci_and_baseline(tmp_path):
    store = fill(tmp_path / "h.db")
    lb = build(store, metrics=["reward", "bench/kl_ref"])
    assert [c.label for c in lb.columns] == ["bench v3 / reward", "bench v3 / kl_ref"]
    assert [c.lower for c in lb.columns] == [False, True]
    rows = {r.label: r for r in lb.rows}
    reward, kl = lb.columns[0].key, lb.columns[1].key
    assert rows["dpo(beta=0.1)"].cells[reward].stat.mean == pytest.approx(0.8)
    assert rows["dpo(beta=0.1)"].cells[reward].stat.half == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)
    assert rows["dpo(beta=0.5)"].cells[reward].stat.n == 2
    # ranks: reward higher is better, kl lower is better
    assert [rows[x].cells[reward].rank for x in ("dpo(beta=0.1)", "sft", "dpo(beta=0.5)")] == [1, 2, 3]
    assert [rows[x].cells[kl].rank for x in ("dpo(beta=0.5)", "dpo(beta=0.1)", "sft")] == [1, 2, 3]
    # no best mark: dpo(beta=0.1) - sft paired by seed is +0.2 ± 0.43 on reward, dpo(beta=0.5) - dpo(beta=0.1)
    # on kl_ref -0.25 ± 0.64; neither interval separates the top row from the next
    assert not any(c.best for r in lb.rows for c in r.cells.values())
    assert rows["dpo(beta=0.1)"].avg_rank == 1.5 and rows["sft"].avg_rank == 2.5
    assert [r.label for r in lb.rows] == ["dpo(beta=0.1)", "dpo(beta=0.5)", "sft"]  # by average rank
    assert lb.counts["done"] == 8 and lb.counts["failed"] == 1
    # the suite's defaults: reward only, baseline sft, differences paired by seed
    lb = build(store)
    assert [c.metric for c in lb.columns] == ["reward"] and lb.baseline == "sft"
    d = {r.label: r.delta for r in lb.rows}
    assert d["sft"] == {}
    assert d["dpo(beta=0.1)"][reward].mean == pytest.approx(0.2) and d["dpo(beta=0.1)"][reward].n == 3
    diffs = [0.3, 0.3, 0.0]
    sd = math.sqrt(sum((x - 0.2) ** 2 for x in diffs) / 2)
    assert d["dpo(beta=0.1)"][reward].half == pytest.approx(4.303 * sd / math.sqrt(3), rel=1e-3)
    assert d["dpo(beta=0.5)"][reward].n == 2 and d["dpo(beta=0.5)"][reward].mean == pytest.approx(-0.3)
    with pytest.raises(HarnessError, match="--baseline spt: no such method label.*did you mean 'sft'"):
        build(store, baseline="spt")
    with pytest.raises(HarnessError, match="--metric rewrd: no such metric.*did you mean 'reward'"):
        build(store, metrics=["rewrd"])
    with pytest.raises(HarnessError, match="--baseline dpo: ambiguous, it could be dpo.beta=0.1., dpo.beta=0.5."):
        build(store, baseline="dpo")


def test_formats(tmp_path):
    store = fill(tmp_path / "h.db")
    lb = build(store, metrics=["*"])
    table = render(lb, "table")
    assert "0.8000 ± 0.2484 (n=3) #1 " in table and "#1 *" not in table and "bench v3 / reward ↑" in table and "kl_ref ↓" in table
    assert "Difference to sft" in table and "these items: +0.2000 ± 0.4303 (n=3); p=0.18, holm p=0.18\n" in table
    assert "(n=2, no interval: every seed gave the same difference)" in table  # not a zero-width interval
    assert "Multiple comparisons: Holm step-down" in table and "family of 2" in table
    md = render(lb, "markdown")
    assert "0.8000 ± 0.2484 (n=3) #1" in md and "**0.8" not in md and "|" in md
    html = render(lb, "html")
    assert "0.8000 ± 0.2484 (n=3) #1" in html and "<b>0.8" not in html and "<table>" in html
    latex = render(lb, "latex")
    assert r"0.8000 $\pm$ 0.2484 (n=3) \#1" in latex and r"\textbf" not in latex and r"kl\_ref" in latex
    rows = list(csv.reader(io.StringIO(render(lb, "csv"))))
    assert rows[0][:3] == ["method", "model", "bench v3 / kl_ref mean"]
    assert len(rows) == 4
    data = json.loads(render(lb, "json"))
    first = data["rows"][0]
    assert first["method"] == "dpo(beta=0.1)" and data["baseline"] == "sft"
    cell = first["cells"]["bench/reward"]
    assert cell["values"] == {"0": 0.8, "1": 0.9, "2": 0.7} and cell["rank"] == 1 and not cell["best"]
    with pytest.raises(HarnessError, match="unknown format"):
        render(lb, "yaml")


def test_report_writes_plots_and_html(tmp_path):
    store = fill(tmp_path / "h.db")
    index = write_report(store, None, tmp_path / "rep")
    assert index == tmp_path / "rep" / "report.html"
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert len([p for p in pngs if p.startswith("bars_")]) == 1  # the suite's metric
    assert "loss_bench.png" in pngs and "rounds_bench.png" in pngs
    for p in (tmp_path / "rep").glob("*.png"):
        assert p.read_bytes()[:4] == b"\x89PNG"
    text = index.read_text()
    assert "<table>" in text and "loss_bench.png" in text and "Sweep demo-1234" in text
