"""Browse and compare: inspect_ai logs and an HTML page per sweep, two sweeps compared, the report's cells."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_harness
from tests.test_sweep import TINY

EVAL = """
[benchmark_params.gsm8k-chat]
limit = 2
max_new_tokens = 3
"""  # no path: the GSM8K copy shipped with the package


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    store = root / "h.db"
    ids = []
    for name, steps in (("a", 2), ("b", 3)):
        suite = root / f"{name}.toml"
        text = TINY.replace('name = "tiny"', f'name = "{name}"').replace("steps = 8", f"steps = {steps}")
        suite.write_text(text.replace('benchmarks = ["didactic-r1"]', 'benchmarks = ["didactic-r1"]\neval = ["gsm8k-chat"]')
                         + EVAL)
        res = run_harness("sweep", str(suite), "--store", str(store), "--json", "--quiet")
        assert res.returncode == 0, res.stderr
        ids.append(json.loads(res.stdout)["sweep"])  # its leaderboard, as JSON
    return store, ids


def test_export_inspect_logs_read_by_inspect_ai(two_sweeps, tmp_path):
    store, (a, _) = two_sweeps
    res = run_cli("export", "--sweep", a, "--store", str(store), "--out", str(tmp_path / "logs"), "--json")
    assert res.returncode == 0, res.stderr
    paths = json.loads(res.stdout)
    assert len(paths) == 8  # 4 cells x (didactic-r1, gsm8k-chat)
    gsm = [p for p in paths if "gsm8k-chat" in p]
    log = json.loads(open(gsm[0]).read())
    assert log["results"]["total_samples"] == 2 and len(log["samples"]) == 2
    sample = log["samples"][0]
    assert sample["input"] and sample["target"] and "correct" in sample["scores"]
    inspect_log = pytest.importorskip("inspect_ai.log", reason="inspect_ai not installed: schema not checked")
    for p in paths:
        parsed = inspect_log.read_eval_log(p)  # the real library parses every log
        assert parsed.status == "success" and parsed.eval.model == "tiny:nano"
    parsed = inspect_log.read_eval_log(gsm[0])
    assert len(parsed.samples) == 2 and parsed.samples[0].target == sample["target"]


def test_export_html_page_is_self_contained_and_searchable(two_sweeps, tmp_path):
    store, (a, _) = two_sweeps
    out = tmp_path / "items.html"
    res = run_cli("export", "--sweep", a, "--store", str(store), "--format", "html", "--out", str(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert 'id="q"' in page and "gsm8k-chat" in page and "http" not in page.split("<script>")[1]
    assert page.count('class="item"') >= 8  # 4 cells x 2 gsm8k items at least


def test_compare_pairs_matching_rows_by_seed(two_sweeps):
    store, (a, b) = two_sweeps
    res = run_cli("compare", a, b, "--store", str(store), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    rows = {(r["label"], r["metric"]): r for r in out["rows"]}
    r = rows[("dpo", "didactic-r1/expected_reward")]
    assert r["paired"] and r["n"] == 2 and r["diff"] == pytest.approx(r["b"] - r["a"])
    # significant only after Holm over every row compared (the family)
    tested = [x for x in out["rows"] if x["p"] is not None]
    assert r["significant"] == (r["p_adjusted"] is not None and r["p_adjusted"] < 0.05)
    assert all(x["p_adjusted"] >= x["p"] for x in tested)
    assert max(x["p_adjusted"] for x in tested) <= 1.0 and (not tested or min(x["p_adjusted"] for x in tested)
                                                           == pytest.approx(min(1.0, min(x["p"] for x in tested)
                                                                                    * len(tested))))
    table = run_cli("compare", a, b, "--store", str(store), "--metric", "expected_reward")
    assert "B - A (95% CI)" in table.stdout and "paired" in table.stdout and "gsm8k" not in table.stdout


def test_report_lists_cells_config_provenance_and_scrolls_wide_tables(two_sweeps, tmp_path):
    store, (a, _) = two_sweeps
    res = run_cli("report", "--sweep", a, "--store", str(store), "--out", str(tmp_path / "r.html"), "--json")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Failed cells (0)" in page and "provenance" in page and "torch_threads" in page
    assert 'overflow-x:auto' in page


def test_each_cell_records_the_copy_of_its_eval_data(two_sweeps):
    """The cells' provenance names the GSM8K copy their evaluations read (embedded: no path, no network)."""
    from alignment_harness_plugins.benchmarks.gsm8k import EMBEDDED_SHA256

    store, _ = two_sweeps
    with sqlite3.connect(store) as con:
        rows = [json.loads(r[0]) for r in con.execute("SELECT provenance_json FROM cells WHERE status='done'")]
    assert len(rows) >= 2
    for prov in rows:
        copy = prov["data"]["gsm8k-chat"]
        assert copy["copy"] == "embedded" and copy["parts"] == EMBEDDED_SHA256
def test_compare_labels_columns_gives_arrows_and_names_the_settings_that_differ(two_sweeps):
    store, (a, b) = two_sweeps
    res = run_cli("compare", a, b, "--store", str(store), "--metric", "expected_reward")
    assert res.returncode == 0, res.stderr
    header = next(line for line in res.stdout.splitlines() if "B - A (95% CI)" in line)
    assert {"method", "metric", "seeds", "pairing", "better"} <= set(header.replace("(", " ").split())
    assert "didactic-r1/expected_reward ↑" in res.stdout  # higher is better
    # the two sweeps were trained with 2 and 3 steps: the comparison says so
    assert "settings that differ (A -> B): " in res.stdout and "train.steps: 2 -> 3" in res.stdout
    out = json.loads(run_cli("compare", a, b, "--store", str(store), "--json").stdout)
    assert {"key": "train.steps", "a": 2, "b": 3} in out["differ"] and "name" not in {d["key"] for d in out["differ"]}
    row = next(r for r in out["rows"] if r["metric"] == "didactic-r1/expected_reward")
    assert row["lower_is_better"] is False and row["better"] in (None, "A", "B")
    same = json.loads(run_cli("compare", a, a, "--store", str(store), "--json").stdout)
    assert same["differ"] == []


def test_export_and_compare_read_a_store_in_a_read_only_folder(two_sweeps, tmp_path, monkeypatch):
    """The folder is made read-only (chmod); tests running as root write there anyway, so the permission
    check is also answered 'not writable' for that folder (the one thing faked: the file system's answer)."""
    import os
    import shutil

    from click.testing import CliRunner

    import harness.sweeps.store_schema as schema
    from harness.cli.app import cli

    store, (a, b) = two_sweeps
    folder = tmp_path / "ro"
    folder.mkdir()
    copy = folder / "h.db"
    shutil.copy(store, copy)
    real_access = os.access
    monkeypatch.setattr(schema.os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode))
    folder.chmod(0o555)
    try:
        res = CliRunner().invoke(cli, ["export", "--sweep", a, "--store", str(copy), "--format", "html",
                                       "--out", str(tmp_path / "items.html")])
        assert res.exit_code == 0, res.output
        assert (tmp_path / "items.html").stat().st_size > 0
        res = CliRunner().invoke(cli, ["compare", a, b, "--store", str(copy), "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["rows"]
    finally:
        folder.chmod(0o755)


def test_a_bad_export_out_is_one_line_and_exit_2(two_sweeps, tmp_path):
    store, (a, _) = two_sweeps
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for fmt, out in (("html", blocker / "items.html"), ("inspect", blocker / "logs"), ("inspect", blocker),
                     ("html", tmp_path)):
        res = run_cli("export", "--sweep", a, "--store", str(store), "--format", fmt, "--out", str(out))
        assert res.returncode == 2, (fmt, out, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and f"--out {out}" in lines[0] and "Traceback" not in res.stderr, res.stderr
