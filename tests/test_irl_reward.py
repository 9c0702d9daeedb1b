"""A saved IRL reward model: irl-rm keeps its discriminator in the cell's folder, and ``reward = "irl:<folder>"``
scores with it exactly as the cell did; on-policy methods train on prompt-only data with it; a bad folder is
one line, exit 2, the store untouched."""

from __future__ import annotations

import copy
import json
import pickle
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.core.data import Completion
from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.models.loading import load_model
from harness.training.datasets import make_reward

DEMOS = [{"messages": [{"role": "user", "content": f"add {i} {i}"}, {"role": "assistant", "content": str(2 * i)}]}
         for i in range(6)]
PROMPTS = [{"prompt": f"add {i} {i}"} for i in range(6)]
IRL_SETS = {"sft_steps": 2, "rm_samples": 2, "rm_steps": 20, "rm_lr": 1e-2, "n": 2, "max_new_tokens": 4}
TEXTS = ["4", "2", "no no no", " 12", "add"]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def host():
    return load()


@pytest.fixture(scope="module")
def nano():
    return load_model("tiny:nano", seed=0)


def samples(nano, texts=TEXTS):
    """(prompts, completions) of a raw and a chat prompt with each text as the response."""
    ps = [nano.encoder.prompt("add 2 2", raw=True), nano.encoder.prompt("add 6 6")]
    pairs = [(p, Completion(p, nano.encoder.response(t, eos=False), t)) for p in ps for t in texts]
    return [p for p, _ in pairs], [c for _, c in pairs]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, host, nano):
    """An irl-rm cell run with a folder; returns (its folder, the record, the in-cell discriminator's scores)."""
    import harness.training.irl_reward as irl
    from harness.cell.run import CellConfig, resolve, run_cell

    d = tmp_path_factory.mktemp("irl")
    seen: dict = {}
    real = irl.save_irl_reward_model

    def spy(rm, out, **kw):  # the discriminator the cell trained and used, scored before it is written
        seen["rm"] = copy.deepcopy(rm)
        seen["scores"] = rm.batch(*samples(nano))
        return real(rm, out, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(irl, "save_irl_reward_model", spy)
    try:
        cfg = CellConfig(model="tiny:nano", method="irl-rm", benchmark=str(jsonl(d / "demos.jsonl", DEMOS)),
                         method_params=IRL_SETS, train={"steps": 1, "rounds": 1, "batch_size": 4,
                                                        "eval_initial": False},
                         eval_benchmarks=("didactic-r1",), train_data=True)
        record = run_cell(resolve(cfg, host), host, out_dir=d / "cell", progress=False, log=lambda _m: None,
                          cache=None)
    finally:
        mp.undo()
    return d / "cell", record, seen


def test_irl_rm_saves_its_reward_model_and_it_reloads_with_the_same_scores(trained, host, nano):
    cell, record, seen = trained
    folder = Path(record["reward_model_dir"])
    assert folder == cell / "reward_model"
    manifest = json.loads((folder / "irl_reward_model.json").read_text())
    assert manifest["kind"] == "irl-reward-model" and manifest["base_model"] == "tiny:nano"
    assert manifest["form"] == "airl" and manifest["token_level"] is False
    assert manifest["method_params"]["rm"] == "init-sft" and manifest["cell_id"] == record["cell_id"]
    assert record["config"]["train"].get("save_reward_model", True)

    reward = make_reward(f"irl:{folder}", host.registry)
    got = reward.batch(*samples(nano))
    want = seen["scores"]
    assert got == pytest.approx(want, abs=1e-6)
    assert max(want) - min(want) > 1e-4  # the fitted head reads the text: a lost head or backbone would differ
    p, c = samples(nano)
    assert reward(p[0], c[0]) == pytest.approx(want[0], abs=1e-6)
    again = pickle.loads(pickle.dumps(reward))  # travels as its path (cells pickle their specs)
    assert again._rm is None and again.batch(p, c) == pytest.approx(want, abs=1e-6)

    # the reward model's content is part of the training data's version (a retrained RM makes new cells)
    from harness.training.datasets import training_source

    prompts = jsonl(cell.parent / "p.jsonl", PROMPTS)
    v1 = training_source(str(prompts), {"reward": f"irl:{folder}"}, host.registry)[0].version
    head = folder / "head.safetensors"
    saved = head.read_bytes()
    try:
        from safetensors.torch import load_file, save_file

        save_file({k: v + 1 for k, v in load_file(str(head)).items()}, str(head))
        v2 = training_source(str(prompts), {"reward": f"irl:{folder}"}, host.registry)[0].version
    finally:
        head.write_bytes(saved)
    assert "+rm" in v1 and v1 != v2

    # a policy that tokenizes differently is refused (its ids would be other words)
    reward.check_tokenizer(nano.tokenizer)
    other = copy.deepcopy(nano.tokenizer)
    other.add_tokens(["<zz-new>"])
    with pytest.raises(HarnessError, match="tokenizes differently"):
        reward.check_tokenizer(other)


def test_on_policy_method_trains_on_prompts_with_the_saved_reward(trained, host, nano, tmp_path, monkeypatch):
    """rloo on a prompt-only file with reward = irl:<folder>: every reward it read is the in-cell discriminator's."""
    from harness.cell.run import CellConfig, resolve, run_cell
    from harness.training.irl_reward import IRLReward

    folder = trained[1]["reward_model_dir"]
    rm = trained[2]["rm"]
    calls: list = []
    real = IRLReward.batch

    def spy(self, prompts, completions):
        out = real(self, prompts, completions)
        calls.append((list(prompts), list(completions), out))
        return out

    monkeypatch.setattr(IRLReward, "batch", spy)
    cfg = CellConfig(model="tiny:nano", method="rloo", benchmark=str(jsonl(tmp_path / "p.jsonl", PROMPTS)),
                     benchmark_params={"reward": f"irl:{folder}"}, method_params={"n": 2, "max_new_tokens": 4},
                     train={"steps": 2, "rounds": 1, "batch_size": 4, "eval_initial": False},
                     eval_benchmarks=("didactic-r1",), train_data=True)
    record = run_cell(resolve(cfg, host), host, progress=False, log=lambda _m: None, cache=None)
    assert calls, "the saved IRL reward model was never asked"
    scores = [s for _, _, out in calls for s in out]
    for prompts, comps, out in calls:
        assert rm.batch(prompts, comps) == pytest.approx(out, abs=1e-6)
    rewards = [s["reward"] for s in record["steps"]]
    assert len(rewards) == 2 and all(min(scores) - 1e-6 <= r <= max(scores) + 1e-6 for r in rewards)
    assert any(abs(s - round(s)) > 1e-4 for s in scores)  # logits, not a verifiable 0/1 reward


SUITE = """
name = "irl-prompts"
models = ["tiny:nano"]
train_data = ["{prompts}"]
eval = ["didactic-r1"]
reward = "irl:{folder}"
threads = 1
[train]
steps = 2
rounds = 1
batch_size = 4
eval_initial = false
[methods.rloo]
n = 2
max_new_tokens = 4
[methods.best-of-n]
n = 2
max_new_tokens = 4
"""


IRL_SUITE = """
name = "irl-demos"
models = ["tiny:nano"]
train_data = ["{demos}"]
eval = ["didactic-r1"]
threads = 1
[train]
steps = 1
rounds = 1
batch_size = 4
eval_initial = false
[methods.irl-rm]
""" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in IRL_SETS.items())


def test_suite_with_irl_reward_end_to_end_and_a_bad_folder(tmp_path):
    """A sweep of irl-rm leaves its RM in <store>.runs/<cell>/reward_model; a second suite trains rloo and
    best-of-n on prompts with it."""
    from harness.cli.app import cli
    from tests.test_sweep import dump

    store = tmp_path / "h.db"
    demos = tmp_path / "irl-demos.toml"
    demos.write_text(IRL_SUITE.format(demos=jsonl(tmp_path / "demos.jsonl", DEMOS)))
    res = CliRunner().invoke(cli, ["sweep", str(demos), "--store", str(store)])
    assert res.exit_code == 0, res.output
    cid, base = sqlite3.connect(store).execute("SELECT id, base_id FROM cells WHERE method='irl-rm'").fetchone()
    folder = tmp_path / "h.runs" / cid / "reward_model"
    assert json.loads((folder / "irl_reward_model.json").read_text())["cell_id"] == base

    prompts = jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    suite = tmp_path / "irl.toml"
    suite.write_text(SUITE.format(prompts=prompts, folder=folder))
    res = CliRunner().invoke(cli, ["sweep", str(suite), "--store", str(store)])
    assert res.exit_code == 0, res.output
    con = sqlite3.connect(store)
    cells = con.execute("SELECT id, method, config_json FROM cells WHERE method != 'irl-rm'").fetchall()
    assert {m for _, m, _ in cells} == {"rloo", "best-of-n"}
    assert con.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0] == 3
    assert all(json.loads(c)["benchmark_params"]["reward"] == f"irl:{folder}" for _, _, c in cells)
    rewards = [json.loads(m)["reward"] for (m,) in con.execute(
        "SELECT metrics_json FROM steps JOIN cells ON cells.id = steps.cell_id WHERE method != 'irl-rm'")]
    assert len(rewards) == 4 and any(abs(r - round(r)) > 1e-4 for r in rewards)  # RM logits, not 0/1
    con.close()

    # a folder that is not a saved IRL RM, and a missing one: one line naming reward and the fix; exit 2
    before = dump(store)
    for bad, why in ((tmp_path, "not a saved IRL reward model"), (tmp_path / "nope", "no such folder")):
        suite.write_text(SUITE.format(prompts=prompts, folder=bad))
        res = CliRunner().invoke(cli, ["sweep", str(suite), "--store", str(store)])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and f'reward = "irl:{bad}"' in lines[0] and why in lines[0], res.output
        assert "reward_model" in lines[0]  # the fix: which folder to give
        assert dump(store) == before


def test_cli_run_takes_the_reward_through_set(trained, tmp_path):
    from harness.cli.app import cli

    folder = trained[1]["reward_model_dir"]
    prompts = jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    res = CliRunner().invoke(cli, ["run", "--data", str(prompts), "--eval", "didactic-r1", "--method", "best-of-n",
                                   "--set", f"reward=irl:{folder}", "--set", "n=2", "--set", "max_new_tokens=4",
                                   "--set", "train.steps=1", "--set", "train.batch_size=4", "--quiet",
                                   "--out", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["run", "--data", str(prompts), "--eval", "didactic-r1", "--method", "rloo",
                                   "--set", f"reward=irl:{tmp_path}"])
    assert res.exit_code == 2 and "not a saved IRL reward model" in res.output
