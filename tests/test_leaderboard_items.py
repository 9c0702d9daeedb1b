"""Item-level pairing: records join on their ``item_id`` (not their position), cells that evaluated
different items are reported in one line and not paired, stores written before item ids pair by position
with a note, and ``train_data`` suites (records stored under the data file's label) get their per-item
differences. A real SQLite store filled by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.results.intervals import twoway
from harness.results.leaderboard import build, render
from harness.sweeps.store import Store, owner_token

DECLARED = {"bench": [{"name": "reward", "lower_is_better": False, "role": "goal", "item": "reward"}]}


def fill(path, records, *, train=None, bench="bench") -> Store:
    """``records``: label -> seed -> per-item records (``reward`` each); the metric is their mean. With
    ``train`` (label -> data file), a ``train_data`` suite: cells train on the data, evaluate on ``bench``."""
    store = Store(path)
    rows, finished = [], {}
    for label, seeds in records.items():
        for seed, recs in seeds.items():
            cid = f"{label}-{seed}"
            trained_on = train[label] if train else bench
            rows.append({"id": cid, "base_id": cid, "label": label, "plugins": {},
                         "config": {"model": "tiny:nano", "method": label.split(" ")[0], "benchmark": trained_on,
                                    "benchmark_version": "1", "seed": seed}})
            finished[cid] = {
                "config": {"benchmark": trained_on, "benchmark_version": "1"},
                "rounds": [{"round": 1, "metrics": {f"{bench}/reward": float(np.mean([r["reward"] for r in recs]))}}],
                "records": [{"benchmark": bench, **r} for r in recs],
                "steps": [], "timings": {}, "provenance": {},
            }
    suite = {"train_data": sorted(set(train.values())), "eval": [bench]} if train else {}
    store.add_sweep("s-1", "s", None, suite, rows)
    for cid, rec in finished.items():
        store.claim(cid, owner_token())
        store.finish(cid, rec)
    return store


def _records(values: dict[str, float], order: list[str] | None = None, ids: bool = True) -> list[dict]:
    return [{**({"item_id": k} if ids else {}), "reward": values[k]} for k in (order or list(values))]


SEEDS = (0, 1, 2)
ITEMS = [f"q{i}" for i in range(8)]


def _scores(seed: int, shift: float) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {k: float(v) + shift * (i % 3) for i, (k, v) in enumerate(zip(ITEMS, rng.normal(size=len(ITEMS)),
                                                                       strict=True))}


def test_items_pair_by_id_not_by_position(tmp_path):
    base = {s: _scores(s, 0.0) for s in SEEDS}
    mine = {s: _scores(s, 0.5) for s in SEEDS}
    shuffled = {s: list(np.random.default_rng(100 + s).permutation(ITEMS)) for s in SEEDS}
    recs = {"sft": {s: _records(base[s]) for s in SEEDS},
            "gsil": {s: _records(mine[s], shuffled[s]) for s in SEEDS}}  # the same items, another order
    lb = build(fill(tmp_path / "h.db", recs), baseline="sft", settings={"declared": DECLARED})
    got = next(r for r in lb.rows if r.label == "gsil").item_delta["bench/reward"]
    by_id = [[mine[s][k] - base[s][k] for k in ITEMS] for s in SEEDS]
    by_position = [[mine[s][k] - base[s][j] for k, j in zip(shuffled[s], ITEMS, strict=True)] for s in SEEDS]
    want, wrong = twoway(by_id), twoway(by_position)
    assert abs(want.lo - wrong.lo) > 0.05  # the test can tell the two pairings apart (the mean cannot)
    assert got.mean == pytest.approx(np.mean(by_id)) and got.items == len(ITEMS) and got.seeds == len(SEEDS)
    assert (got.lo, got.hi) == (pytest.approx(want.lo, abs=1e-12), pytest.approx(want.hi, abs=1e-12))
    assert lb.item_notes == []


def test_cells_that_evaluated_different_items_are_reported_not_paired(tmp_path):
    base = {s: _scores(s, 0.0) for s in SEEDS}
    other = {s: {("x" + k if k == "q3" else k): v for k, v in _scores(s, 0.5).items()} for s in SEEDS}
    recs = {"sft": {s: _records(base[s]) for s in SEEDS},
            "gsil": {s: _records(_scores(s, 0.5)) for s in SEEDS},
            "spin": {s: _records(other[s]) for s in SEEDS}}  # one item differs: same count, not the same items
    lb = build(fill(tmp_path / "h.db", recs), baseline="sft", settings={"declared": DECLARED})
    rows = {r.label: r for r in lb.rows}
    assert "bench/reward" in rows["gsil"].item_delta  # still paired
    assert rows["spin"].item_delta == {} and "bench/reward" in rows["spin"].delta  # by seed: still there
    assert len(lb.item_notes) == 1, lb.item_notes
    note = lb.item_notes[0]
    assert note.startswith("spin vs sft on bench v1 / reward: not paired item by item")
    assert "different items (8 vs 8, 7 in common)" in note
    assert note in render(lb, "table").splitlines()
    data = json.loads(render(lb, "json"))
    assert data["item_notes"] == [note]
    assert next(r for r in data["rows"] if r["method"] == "spin")["vs_baseline_items"] == {}


def test_a_store_without_item_ids_pairs_by_position_and_says_so(tmp_path):
    base = {s: _scores(s, 0.0) for s in SEEDS}
    mine = {s: _scores(s, 0.5) for s in SEEDS}
    recs = {"sft": {s: _records(base[s], ids=False) for s in SEEDS},
            "gsil": {s: _records(mine[s], ids=False) for s in SEEDS}}
    lb = build(fill(tmp_path / "h.db", recs), baseline="sft", settings={"declared": DECLARED})
    got = next(r for r in lb.rows if r.label == "gsil").item_delta["bench/reward"]
    assert got.mean == pytest.approx(np.mean([mine[s][k] - base[s][k] for s in SEEDS for k in ITEMS]))
    assert len(lb.item_notes) == 1 and "items are paired by position" in lb.item_notes[0]
    assert lb.item_notes[0] in render(lb, "table")
    # ids on one side only: not paired, one line
    recs["gsil"] = {s: _records(mine[s]) for s in SEEDS}
    lb = build(fill(tmp_path / "m.db", recs), baseline="sft", settings={"declared": DECLARED})
    assert all(not r.item_delta for r in lb.rows)
    assert len(lb.item_notes) == 1 and "only one of the two cells' records carries item ids" in lb.item_notes[0]


def test_a_train_data_suite_has_per_item_differences(tmp_path):
    # records are stored under the data file's label (the cell's benchmark), metrics under the eval benchmark
    base = {s: _scores(s, 0.0) for s in SEEDS}
    mine = {s: _scores(s, 0.5) for s in SEEDS}
    recs = {"sft @ prefs.jsonl": {s: _records(base[s]) for s in SEEDS},
            "dpo @ prefs.jsonl": {s: _records(mine[s]) for s in SEEDS}}
    train = {label: "prefs.jsonl" for label in recs}
    lb = build(fill(tmp_path / "h.db", recs, train=train), baseline="sft @ prefs.jsonl",
               settings={"declared": DECLARED})
    data = json.loads(render(lb, "json"))
    dpo = next(r for r in data["rows"] if r["method"] == "dpo @ prefs.jsonl")
    assert set(dpo["vs_baseline_items"]) == {"bench/reward"}, dpo
    got = dpo["vs_baseline_items"]["bench/reward"]
    assert got["mean"] == pytest.approx(np.mean([mine[s][k] - base[s][k] for s in SEEDS for k in ITEMS]))
    assert (got["items"], got["n"]) == (len(ITEMS), len(SEEDS))
    assert got["ci95_low"] < got["mean"] < got["ci95_high"]
    assert data["item_notes"] == []


def test_benchmarks_json_lists_declared_metrics():
    from click.testing import CliRunner

    from harness.cli.app import cli

    res = CliRunner().invoke(cli, ["benchmarks", "--json"])
    assert res.exit_code == 0, res.output
    rows = {b["name"]: b for b in json.loads(res.output)}
    assert all(b["metrics"] for b in rows.values()), [n for n, b in rows.items() if not b["metrics"]]
    assert rows["heldout-nll"]["metrics"] == [
        {"name": "nll", "direction": "lower", "role": "goal", "item": "nll"},
        {"name": "nll_sum", "direction": "lower", "role": "goal", "item": "nll_sum"}]
    kl = next(m for m in rows["didactic-r1"]["metrics"] if m["name"] == "kl_ref")
    assert (kl["direction"], kl["role"]) == ("lower", "diagnostic")
    text = CliRunner().invoke(cli, ["benchmarks", "heldout-nll"]).output
    assert "metrics: nll (lower is better, goal), nll_sum (lower is better, goal)" in text
