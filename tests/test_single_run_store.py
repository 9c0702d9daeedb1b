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


def test_every_evaluated_round_keeps_its_items_linked_from_the_report(tmp_path):
    store, out = tmp_path / "h.db", tmp_path / "run"
    res = json.loads(invoke("--results", str(tmp_path / "home"), *RUN, "--set", "train.rounds=2", "--set",
                            "train.eval_every_steps=1", "--store", str(store), "--out", str(out)).stdout)
    record = json.loads((out / "record.json").read_text())
    assert [r["round"] for r in record["rounds"]] == [0, 1, 2]
    assert set(record["round_records"]) == {"0", "1"} and {r["round"] for r in record["records"]} == {2}
    assert len(record["round_records"]["0"]) == len(record["records"]) > 0
    # eval_every_steps=1: step 1 of each round is evaluated inside the round (step 2 ends it: evaluated anyway)
    assert [(e["round"], e["step"]) for e in record["step_evals"]] == [(1, 1), (2, 3)]
    assert "eval/didactic-r1/expected_reward" in record["steps"][0] and "eval/didactic-r1/expected_reward" \
        not in record["steps"][1]
    invoke("report", "--store", str(store), "--sweep", res["sweep"], "--out", str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    items = (tmp_path / "r-items.html").read_text()

    from harness.sweeps.store import Store

    with Store(store, readonly=True) as db:
        (row,) = db.cells(res["sweep"])
        assert [r["round"] for r in db.item_records(row["id"])].count(0) == len(record["records"])
    for rnd in (0, 1, 2):
        anchor = f"cell-{row['id']}-r{rnd}"
        assert f'r-items.html#{anchor}"' in page and f'id="{anchor}"' in items
    assert items.count("round 0") == items.count("round 2") > 0


def test_the_items_page_shows_the_extracted_answer_and_finish_reason(tmp_path):
    store = tmp_path / "h.db"  # GSM8K from the copy shipped with the package (no path)
    invoke("--results", str(tmp_path / "home"), "eval", "--benchmark", "gsm8k-chat", "--limit", "2", "--set", "max_new_tokens=3", "--quiet", "--threads", "1",
           "--store", str(store))
    invoke("export", "--store", str(store), "--format", "html", "--out", str(tmp_path / "i.html"))
    page = (tmp_path / "i.html").read_text()
    assert page.count("<b>extracted answer</b>") == 2 and page.count("finish_reason: length") == 2  # 3 tokens
