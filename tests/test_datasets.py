"""Datasets as training data: every TRL-shaped format from local files, training tiny:nano on them, suites
with train_data/eval axes, a reward model for prompt-only data, and one-line errors for bad rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.models.loading import load_model
from harness.models.text import raw_ids
from harness.training.datasets import dataset_params, load_kind, lookup, make_reward, training_source

MSGS = [
    {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hi"},
                  {"role": "assistant", "content": "hi"}, {"role": "user", "content": "again"},
                  {"role": "assistant", "content": "hi hi"}]},
    *[{"messages": [{"role": "user", "content": f"add {i} {i}"}, {"role": "assistant", "content": str(2 * i)}]}
      for i in range(7)],
]
PLAIN_PC = [{"prompt": f"add {i} {i}", "completion": f" {2 * i}"} for i in range(8)]
CONV_PC = [{"prompt": [{"role": "user", "content": f"add {i} {i}"}],
            "completion": [{"role": "assistant", "content": str(2 * i)}]} for i in range(8)]
PLAIN_PREFS = [{"prompt": f"add {i} {i}", "chosen": f" {2 * i}", "rejected": " no"} for i in range(8)]
CONV_PREFS = [{"chosen": [{"role": "user", "content": f"add {i} {i}"}, {"role": "assistant", "content": str(2 * i)}],
               "rejected": [{"role": "user", "content": f"add {i} {i}"}, {"role": "assistant", "content": "no"}]}
              for i in range(8)]
PROMPTS = [{"prompt": f"add {i} {i}", "answer": str(2 * i)} for i in range(8)]


def write(path: Path, rows: list[dict]) -> Path:
    """A file in the format its suffix names: JSONL, JSON (a list), Parquet or CSV."""
    import pandas as pd

    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    return {
        "messages": write(d / "messages.jsonl", MSGS),
        "plain_pc": write(d / "plain_pc.csv", PLAIN_PC),
        "conv_pc": write(d / "conv_pc.parquet", CONV_PC),
        "plain_prefs": write(d / "plain_prefs.json", PLAIN_PREFS),
        "conv_prefs": write(d / "conv_prefs.jsonl", CONV_PREFS),
        "prompts": write(d / "prompts.parquet", PROMPTS),
    }


@pytest.fixture(scope="module")
def host():
    return load()


@pytest.fixture(scope="module")
def nano():
    return load_model("tiny:nano", seed=0)


def chat_ids(tok, msgs) -> tuple[int, ...]:
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
    return tuple(int(i) for i in (ids["input_ids"] if isinstance(ids, dict) else ids))


def test_each_format_gives_what_it_holds(files, host, nano):
    reg, enc, tok = host.registry, nano.encoder, nano.tokenizer
    kinds = {name: training_source(str(p), {}, reg)[0].provides for name, p in files.items()}
    assert kinds["messages"] == kinds["plain_pc"] == kinds["conv_pc"] == {"demonstrations", "prompts"}
    assert kinds["plain_prefs"] == kinds["conv_prefs"] == {"demonstrations", "preferences", "prompts"}
    assert kinds["prompts"] == {"prompts"}

    def get(name, kind):
        return load_kind(lookup(str(files[name]), reg), dataset_params({}, where="t"), kind, enc)

    # conversational: the last assistant turn is the response, every earlier turn (system included) the prompt
    demo = get("messages", "demonstrations")[0]
    assert demo.prompt.ids == chat_ids(tok, MSGS[0]["messages"][:-1])
    assert demo.response == enc.response("hi hi")
    assert demo.prompt.text == "again"
    # plain prompt/completion: the raw path, no chat template
    demo = get("plain_pc", "demonstrations")[3]
    assert demo.prompt.ids == tuple(raw_ids(tok, "add 3 3")) and demo.response == enc.response(" 6")
    # conversational prompt/completion: through the template
    demo = get("conv_pc", "demonstrations")[3]
    assert demo.prompt.ids == chat_ids(tok, CONV_PC[3]["prompt"]) and demo.response == enc.response("6")
    # plain pairs
    pair = get("plain_prefs", "preferences")[2]
    assert pair.prompt.ids == tuple(raw_ids(tok, "add 2 2"))
    assert (pair.chosen, pair.rejected) == (enc.response(" 4"), enc.response(" no"))
    # conversational pairs with an implicit prompt: the shared turns
    pair = get("conv_prefs", "preferences")[2]
    assert pair.prompt.ids == chat_ids(tok, [{"role": "user", "content": "add 2 2"}])
    assert (pair.chosen, pair.rejected) == (enc.response("4"), enc.response("no"))
    assert get("conv_prefs", "demonstrations")[2].response == enc.response("4")
    # prompt-only, with the extra column in meta (what a verifiable reward reads)
    prompt = get("prompts", "prompts")[5]
    assert prompt.ids == tuple(raw_ids(tok, "add 5 5")) and prompt.meta["answer"] == "10"
    # column mapping and limit
    params = dataset_params({"columns": {"prompt": "answer"}, "limit": 2}, where="t")
    got = load_kind(lookup(str(files["prompts"]), reg), params, "prompts", enc)
    assert [p.text for p in got] == ["0", "2"]


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory, nano) -> Path:
    """A tiny sequence-classification reward model (one label), saved where transformers can load it."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(nano.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                      pad_token_id=nano.tokenizer.pad_token_id)
    out = tmp_path_factory.mktemp("rm") / "rm"
    LlamaForSequenceClassification(cfg).save_pretrained(out)
    nano.tokenizer.save_pretrained(out)
    return out


def test_reward_model_scores_with_its_own_template(host, nano, reward_model):
    import torch
    from transformers import AutoModelForSequenceClassification

    from harness.core.data import Completion

    rm = make_reward(f"rm:{reward_model}", host.registry)
    prompt = nano.encoder.prompt("add 2 2")
    a, b = (rm(prompt, Completion(prompt, (), t)) for t in ("4", "no no no"))
    model = AutoModelForSequenceClassification.from_pretrained(reward_model).eval()
    text = nano.tokenizer.apply_chat_template([{"role": "user", "content": "add 2 2"},
                                               {"role": "assistant", "content": "4"}], tokenize=False)
    with torch.no_grad():
        want = model(**nano.tokenizer(text, return_tensors="pt")).logits[0, 0].item()
    assert a == pytest.approx(want, abs=1e-5) and a != b
    with pytest.raises(HarnessError, match="rm:<hub id or local path>"):
        make_reward("nonsense", host.registry)


@pytest.mark.parametrize("method,data,extra", [
    ("sft", "messages", {}),
    ("dpo", "conv_prefs", {}),
    ("rloo", "prompts", {"reward": "rm"}),
])
def test_train_tiny_on_each_kind_and_evaluate(files, host, reward_model, method, data, extra):
    from harness.cell.run import CellConfig, resolve, run_cell

    bparams = {"reward": f"rm:{reward_model}"} if extra.get("reward") else {}
    cfg = CellConfig(model="tiny:nano", method=method, benchmark=str(files[data]), benchmark_params=bparams,
                     train={"steps": 6, "batch_size": 4, "lr": 3e-3, "rounds": 1, "eval_initial": True},
                     eval_benchmarks=("didactic-r1",), train_data=True,
                     method_params={"n": 2, "max_new_tokens": 4} if method == "rloo" else {})
    cell = resolve(cfg, host)
    assert cell.resolved_dict()["benchmark"] == str(files[data]) and cell.resolved_dict()["train_data"]
    record = run_cell(cell, host, progress=False, log=lambda _m: None, cache=None)
    assert [r["round"] for r in record["rounds"]] == [0, 1]
    assert "didactic-r1/expected_reward" in record["final"]
    steps = record["steps"]
    assert len(steps) == 6
    if method == "sft":  # the demonstrations' log-likelihood rises
        assert steps[-1]["logp_demo"] > steps[0]["logp_demo"]
    if method == "dpo":  # the pairs' margin grows
        assert steps[-1]["margin"] > steps[0]["margin"]
    if method == "rloo":  # rewards come from the reward model: real numbers, not all equal
        rewards = [s["reward"] for s in steps]
        assert len(set(rewards)) > 1


SUITE = """
name = "files"
models = ["tiny:nano"]
train_data = ["{msgs}", "{prefs}"]
eval = ["didactic-r1"]
seeds = [0, 1]
jobs = 2
threads = 1
[train]
steps = 3
batch_size = 4
[methods.sft]
[methods.dpo]
[[exclude]]
method = "dpo"
benchmark = "{msgs}"
[leaderboard]
baseline = "sft @ {prefs}"
"""


def test_suite_with_train_data_and_eval_end_to_end(files, tmp_path, monkeypatch):
    from harness.cli.app import cli
    from tests.test_sweep import dump, leaderboard_json

    msgs, prefs = files["messages"], files["conv_prefs"]
    suite = tmp_path / "files.toml"
    suite.write_text(SUITE.format(msgs=msgs, prefs=prefs))
    store = tmp_path / "h.db"
    res = CliRunner().invoke(cli, ["sweep", str(suite), "--store", str(store)])
    assert res.exit_code == 0, res.output
    lb = leaderboard_json(store)
    rows = {r["method"] for r in lb["rows"]}
    assert rows == {f"sft @ {msgs}", f"sft @ {prefs}", f"dpo @ {prefs}"}
    keys = [c["key"] for c in lb["columns"]]
    assert keys and all(k.startswith("didactic-r1/") and "@" not in k for k in keys), keys
    assert all(r["cells"][k]["n"] == 2 for r in lb["rows"] for k in keys)
    # per-item differences to the baseline, although the records are stored under the data file's label;
    # their mean over items and seeds is the by-seed difference of the item means
    assert lb["baseline"] == f"sft @ {prefs}" and lb["item_notes"] == []
    for r in lb["rows"]:
        if r["method"] == lb["baseline"]:
            continue
        items = r["vs_baseline_items"]
        assert {"didactic-r1/expected_reward", "didactic-r1/kl_ref"} <= set(items), r
        for k, it in items.items():
            assert it["n"] == 2 and it["items"] > 1
            assert it["mean"] == pytest.approx(r["vs_baseline"][k]["mean"], abs=1e-9)
            assert it["ci95_low"] <= it["mean"] <= it["ci95_high"]

    # bad data: one line naming the file, the row and the column; exit 2; the store is untouched
    bad = write(tmp_path / "bad.jsonl", [*MSGS[:2], {"text": "no messages here"}, *MSGS[2:]])
    suite.write_text(SUITE.format(msgs=bad, prefs=prefs))
    before = dump(store)
    res = CliRunner().invoke(cli, ["sweep", str(suite), "--store", str(store)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{bad}: row 3:" in lines[0] and "'messages'" in lines[0], res.output
    assert dump(store) == before
    con = sqlite3.connect(store)
    assert con.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0] == 6


def test_mistyped_column_and_needs_check(files, tmp_path, host):
    from harness.suite.expand import expand, read_suite

    bad = write(tmp_path / "typed.jsonl", [*PLAIN_PC[:3], {"prompt": "x", "completion": 7}])
    with pytest.raises(HarnessError, match=r"typed\.jsonl: row 4: column 'completion' should be a string"):
        training_source(str(bad), {}, host.registry)
    suite = tmp_path / "needs.toml"
    suite.write_text(SUITE.format(msgs=files["messages"], prefs=files["conv_prefs"]).replace(
        '[[exclude]]\nmethod = "dpo"', '[[exclude]]\nmethod = "nothing"'))
    with pytest.raises(HarnessError) as err:
        expand(read_suite(suite), host, path=suite)
    msg = str(err.value.message)
    assert "suite 'files'" in msg and "method 'dpo'" in msg and f"dataset '{files['messages']}'" in msg
    assert "needs preferences" in msg


def test_cli_run_data_and_datasets_json(files, tmp_path):
    from harness.cli.app import cli

    res = CliRunner().invoke(cli, ["datasets", "--json"])
    assert res.exit_code == 0, res.output
    named = {d["name"]: d for d in json.loads(res.output)}
    assert {"ultrachat", "ultrafeedback", "hh-rlhf", "alpaca", "alpacafarm"} <= set(named)
    assert named["ultrafeedback"]["provides"] == ["demonstrations", "preferences", "prompts"]
    assert named["ultrachat"]["hub"] == "HuggingFaceH4/ultrachat_200k"
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--data", str(files["plain_pc"]), "--eval", "didactic-r1", "--method",
                                   "sft", "--set", "train.steps=2", "--set", "data.columns.completion=completion",
                                   "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["benchmark"] == str(files["plain_pc"]) and "didactic-r1/kl_ref" in record["final"]
    res = CliRunner().invoke(cli, ["run", "--data", str(tmp_path / "nope.jsonl"), "--eval", "didactic-r1",
                                   "--method", "sft"])
    assert res.exit_code == 2 and "no such file" in res.output


def test_named_dataset_offline_says_how_to_point_it_at_a_local_copy(host, nano, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    spec = host.registry.dataset("ultrachat")
    with pytest.raises(HarnessError, match=r"dataset 'ultrachat': can't load the Hugging Face dataset "
                                           r"'HuggingFaceH4/ultrachat_200k' split 'train_sft'.*--set data\.path="):
        load_kind(spec, dataset_params({}, where="t"), "demonstrations", nano.encoder)


def test_hh_rlhf_and_alpaca_rows(host, nano, tmp_path):
    from alignment_harness_plugins.datasets.seed_papers import alpaca_row, hh_messages

    t = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: fine"
    assert hh_messages(t) == [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"},
                              {"role": "user", "content": "how are you?"}, {"role": "assistant", "content": "fine"}]
    assert alpaca_row({"instruction": "Do X", "input": "data", "output": "ok"})["prompt"] == "Do X\n\ndata"
    # a local copy of hh-rlhf through the named dataset's conversion
    copy = write(tmp_path / "hh.jsonl", [{"chosen": t, "rejected": t[: t.rindex("fine")] + "bad"}])
    params = dataset_params({"path": str(copy)}, where="t")
    pair = load_kind(host.registry.dataset("hh-rlhf"), params, "preferences", nano.encoder)[0]
    assert pair.chosen == nano.encoder.response("fine") and pair.rejected == nano.encoder.response("bad")
    assert pair.prompt.meta["messages"][-1] == {"role": "user", "content": "how are you?"}


def test_heldout_nll_scores_the_reference_responses(files, host, nano):
    """heldout-nll: per item, minus the mean response-token log-prob under the policy (teacher forcing)."""
    import torch

    from harness.core.context import EvalContext
    from harness.engines.hf import HFEngine
    from harness.models.lm import LM

    spec = host.registry.benchmark("heldout-nll")
    lm = LM(nano.model, nano.tokenizer, HFEngine(nano.model, nano.tokenizer))
    params = spec.params(data=str(files["messages"]), limit=3)
    res = spec.evaluate(EvalContext(engine=lm.engine, lm=lm, encoder=lm.encoder, params=params, seed=0))
    assert len(res.records) == 3
    demo = load_kind(lookup(str(files["messages"]), host.registry), dataset_params({}, where="t"),
                     "demonstrations", nano.encoder)[1]
    ids = torch.tensor([list(demo.prompt.ids) + list(demo.response)])
    with torch.no_grad():
        logp = torch.log_softmax(nano.model(ids).logits[0, :-1].float(), -1)
    n = len(demo.response)
    want = -logp[-n:].gather(-1, ids[0, -n:, None]).sum().item()
    assert res.records[1]["nll_sum"] == pytest.approx(want, rel=1e-4)
    assert res.records[1]["nll"] == pytest.approx(want / n, rel=1e-4)
    assert res.metrics["nll"] == pytest.approx(sum(r["nll"] for r in res.records) / 3)
    # each record names its item by content: the same demonstration has the same id, wherever it is read
    from harness.core.context import item_id

    assert res.records[1]["item_id"] == item_id(demo.prompt.ids, demo.response)
    assert len({r["item_id"] for r in res.records}) == 3
