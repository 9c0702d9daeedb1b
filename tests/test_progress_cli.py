"""Progress on stderr and data on stdout: bars with item counts, --json / --quiet, a closed pipe."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

from harness.core.progress import CountingEngine, Items
from tests.conftest import ROOT, run_cli, run_harness
from tests.test_sweep import TINY

GSM8K = ["--benchmark", "gsm8k-chat", "--set", "max_new_tokens=2"]  # no path: the copy shipped with the package


def test_items_bar_counts_absolute_reports_and_engine_calls(capsys):
    items = Items("eval x")
    items(2, 4)
    items(4, 4)
    assert items.bars[""].n == 4 and items.bars[""].total == 4
    items(1, 3, what="judging")
    assert items.bars["judging"].n == 1

    class Echo:
        own_weights = False

        def generate(self, prompts, **kw):
            return [[p] for p in prompts]

    counting = Items("eval y")
    engine = CountingEngine(Echo(), counting)
    assert engine.generate(["a", "b", "c"], n=1) == [["a"], ["b"], ["c"]]
    assert counting.bars[""].n == 3 and counting.done[""] == 3 and engine.own_weights is False
    items.close()
    counting.close()
    assert "eval x" in capsys.readouterr().err


def test_eval_shows_items_done_of_total_on_stderr_and_json_on_stdout():
    res = run_harness("eval", "--model", "tiny:nano", *GSM8K, "--limit", "3", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)  # only JSON on stdout
    assert "gsm8k-chat/exact_match,strict-match" in data["metrics"] and data["data"]["gsm8k-chat"]["copy"] == "embedded"
    assert "eval gsm8k-chat" in res.stderr and "3/3" in res.stderr  # the bar: items done / total
    quiet = run_harness("eval", "--model", "tiny:nano", *GSM8K, "--limit", "3", "--json", "--quiet")
    assert quiet.returncode == 0 and "3/3" not in quiet.stderr and json.loads(quiet.stdout) == data


def test_run_json_and_generate_json(tmp_path):
    res = run_harness("run", "--model", "tiny:nano", "--method", "sft", "--benchmark", "didactic-r1", "--set",
                      "train.steps=2", "--set", "n_states=2", "--set", "warm_steps=2", "--json", "--out",
                      str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert "didactic-r1/expected_reward" in out["final"] and out["out"] == str(tmp_path / "c")
    assert "round 1/1 trained" in res.stderr  # status and log lines: stderr
    gen = run_harness("generate", "hi", "--model", "tiny:nano", "--max-new-tokens", "2", "--json")
    assert gen.returncode == 0 and set(json.loads(gen.stdout)) == {"prompt", "model", "text", "finish_reason"}


def test_sweep_json_prints_only_json_and_listings_have_json(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("steps = 8", "steps = 2"))
    store = tmp_path / "h.db"
    res = run_harness("sweep", str(suite), "--store", str(store), "--format", "json")
    assert res.returncode == 0, res.stderr
    board = json.loads(res.stdout)
    assert board and "2 cells, 2 to run" in res.stderr
    sweeps = run_cli("sweeps", "--store", str(store), "--json")
    rows = json.loads(sweeps.stdout)
    assert rows[0]["done"] == 2 and rows[0]["cells"] == 2
    engines = json.loads(run_cli("engines", "--json").stdout)
    assert {"name", "available"} <= set(engines[0]) and "hf" in {e["name"] for e in engines}
    dry = run_cli("sweep", str(suite), "--dry-run", "--json")
    assert len(json.loads(dry.stdout)["cells"]) == 2


def test_a_closed_pipe_does_not_exit_1_or_print_a_traceback():
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ: a one-page pipe, so the writer hits the closed end
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "methods"], stdout=w, stderr=subprocess.PIPE,
                            cwd=ROOT)
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        assert reader.readline()  # `| head -1`
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode != 1 and "Traceback" not in err and "BrokenPipe" not in err, (proc.returncode, err)
