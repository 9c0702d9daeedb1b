"""`harness run` and `harness eval` record into the store, so report, leaderboard, export and compare work on a
single run without a suite."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness.cli.app import cli

RUN = ["run", "--method", "sft", "--benchmark", "didactic-r1", "--set", "train.steps=2", "--set", "n_states=2",
       "--set", "warm_steps=2", "--set", "train.batch_size=4", "--threads", "1", "--quiet", "--json"]


def invoke(*args: str):
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_run_and_eval_are_browsable_from_the_store(tmp_path):
    store = tmp_path / "h.db"
    home = ["--results", str(tmp_path / "home")]
    a = json.loads(invoke(*home, *RUN, "--store", str(store)).stdout)["sweep"]
    b = json.loads(invoke(*home, *RUN, "--set", "train.lr=0.01", "--store", str(store)).stdout)["sweep"]
    assert a.startswith("run-") and b.startswith("run-") and a != b
    invoke(*home, "eval", "--benchmark", "didactic-r1", "--set", "n_states=2", "--set", "warm_steps=2", "--quiet",
           "--threads", "1", "--store", str(store))
    sweeps = json.loads(invoke("sweeps", "--store", str(store), "--json").stdout)
    assert {s["id"].split("-")[0] for s in sweeps} == {"run", "eval"} and all(s["done"] == 1 for s in sweeps)
    board = json.loads(invoke("leaderboard", "--store", str(store), "--sweep", a, "--format", "json").stdout)
    assert "sft" in json.dumps(board)
    invoke("report", "--store", str(store), "--sweep", a, "--out", str(tmp_path / "r.html"))
    assert (tmp_path / "r.html").read_text().count("didactic-r1") > 0
    invoke("export", "--store", str(store), "--sweep", a, "--format", "html", "--out", str(tmp_path / "i.html"))
    assert (tmp_path / "i.html").read_text().count('class="item"') >= 2
    cmp = json.loads(invoke("compare", a, b, "--store", str(store), "--json").stdout)
    assert cmp["rows"] and {"key": "train.lr", "a": 0.001, "b": 0.01} in cmp["differ"]
    untrained = json.loads(invoke("leaderboard", "--store", str(store), "--format", "json").stdout)  # the latest
    assert "untrained" in json.dumps(untrained)
