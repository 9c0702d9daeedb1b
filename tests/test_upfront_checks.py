"""Bad input a cell could only find when it starts, found once before the first cell: one line, exit 2, the store
untouched (models, devices, values in range, --set blame, a folder as the suite, repeated grid values, a damaged
store); and training data checked up front (ties, empty or unmapped files, misspelled mappings, rows over the
model's context), with data paths read from the suite's folder."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from harness.cli.app import cli

BASE = """\
name = "b"
models = ["tiny:nano"]
benchmarks = ["didactic-r1"]
seeds = [0]
[train]
steps = 2
batch_size = 4
[benchmark_params.didactic-r1]
n_states = 2
warm_steps = 2
[methods.sft]
"""


def sweep(tmp_path, text: str, *extra: str):
    suite = tmp_path / "s.toml"
    suite.write_text(text)
    store = tmp_path / "store" / "h.db"
    res = CliRunner().invoke(cli, ["sweep", str(suite), "--store", str(store), "--quiet", *extra])
    return res, store


def one_line_exit_2(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("old", "new", "needles"), [
    ('models = ["tiny:nano"]', 'models = [""]', ("s.toml: models.0", "empty model name")),
    ('models = ["tiny:nano"]', 'models = ["./no-such-model"]', ("models.0", "no such folder")),
    ('models = ["tiny:nano"]', 'models = ["FAKE"]', ("models.0", "not a GGUF file")),
    ('models = ["tiny:nano"]', 'models = ["someorg/no-such-model-xyz"]', ("models.0", "HF_HUB_OFFLINE")),
    ("seeds = [0]", 'seeds = [0]\ndevice = "cuda"', ("s.toml: device", "CUDA is not available")),
    ("n_states = 2", "n_states = 0", ("benchmark_params.didactic-r1.n_states", "must be >= 1, got 0")),
])
def test_models_devices_and_ranges_are_checked_before_any_cell(tmp_path, monkeypatch, old, new, needles):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub name is not looked for on the network
    if new.endswith('device = "cuda"'):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a gguf file")
    res, store = sweep(tmp_path, BASE.replace(old, new.replace("FAKE", str(fake))))
    one_line_exit_2(res, *needles)
    assert not store.exists()  # nothing recorded: the store was never opened


def test_a_set_key_is_blamed_on_set_and_a_folder_is_not_a_suite(tmp_path):
    res, _ = sweep(tmp_path, BASE, "--set", "trian.steps=3")
    one_line_exit_2(res, "--set trian.steps", "trian")
    res = CliRunner().invoke(cli, ["sweep", str(tmp_path), "--dry-run"])
    one_line_exit_2(res, "is a folder", "s.toml")


def test_a_method_parameter_outside_its_declared_bounds_is_one_line_naming_the_range(tmp_path):
    res, store = sweep(tmp_path, BASE.replace("[methods.sft]", "[methods.dpo]"), "--set", "methods.dpo.beta=-1")
    one_line_exit_2(res, "s.toml (--set): methods.dpo.beta: parameter 'beta' must be > 0, got -1.0")
    assert not store.exists()
    res = CliRunner().invoke(cli, ["run", "--method", "rloo", "--benchmark", "didactic-r1", "--set", "n=1",
                                   "--out", str(tmp_path / "out")])
    one_line_exit_2(res, "method rloo: parameter 'n' must be >= 2, got 1")


def test_a_repeated_grid_value_is_an_error(tmp_path):
    text = BASE.replace("[methods.sft]", "[methods.dpo]\n[methods.dpo.grid]\nbeta = [0.1, 0.2, 0.1]")
    res, store = sweep(tmp_path, text)
    one_line_exit_2(res, "methods.dpo.grid.beta", "repeats")
    assert not store.exists()


def test_a_sweep_refuses_to_append_to_a_damaged_store(tmp_path):
    from harness.sweeps.store import Store
    from tests.test_store import cell_row

    path = tmp_path / "store" / "h.db"
    with Store(path) as db:
        db.add_sweep("s", "s", None, {"pad": "x" * 5000}, [cell_row(f"c{i}") for i in range(2000)])
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 3000)
    before = path.read_bytes()
    res, _ = sweep(tmp_path, BASE)
    line = one_line_exit_2(res, "quick_check reports damage", "nothing was written")
    assert "\n" not in line and path.read_bytes() == before


def test_hub_probe_is_short_and_suggests_hf_hub_offline(monkeypatch):
    """A name that never resolves (.invalid, RFC 6761): the probe answers within its timeout."""
    import time

    from harness.core.hub import unreachable

    monkeypatch.setenv("HF_ENDPOINT", "https://no-such-host.invalid")
    for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    t0 = time.perf_counter()
    reason = unreachable(timeout=2)
    assert reason is not None and "HF_HUB_OFFLINE=1" in reason
    assert time.perf_counter() - t0 < 10


# -- training data ----------------------------------------------------------------------------------------------


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def source(path, **over):
    from harness.core.plugins import get_host
    from harness.training.datasets import training_source

    return training_source(str(path), over, get_host().registry, where="train_data")


def test_a_pair_with_chosen_equal_to_rejected_is_refused(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                          {"prompt": "q", "chosen": "same", "rejected": "same"}])
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match=r"row 2: 'chosen' and 'rejected' are the same response"):
        source(f)


def test_empty_and_unmapped_files_name_the_columns_found(tmp_path):
    from harness.core.errors import HarnessError

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(HarnessError, match=r"no rows \(an empty file\)"):
        source(empty)
    other = write_jsonl(tmp_path / "o.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(HarnessError, match=r"found: answer, question\).*data\.columns"):
        source(other)
    with pytest.raises(HarnessError, match=r"data\.columns\.completion = 'answr'.*found: answer, question.*'answer'"):
        source(other, columns={"prompt": "question", "completion": "answr"})
    bench, _ = source(other, columns={"prompt": "question", "completion": "answer"})
    assert "demonstrations" in bench.provides


def test_a_row_without_its_messages_is_reported_as_such(tmp_path):
    from harness.core.errors import HarnessError

    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    f = write_jsonl(tmp_path / "m.jsonl", [{"messages": conv}, {"prompt": "only a prompt"}])
    with pytest.raises(HarnessError, match=r"row 2: column 'messages' is missing or empty") as exc:
        source(f)
    assert "completion" not in str(exc.value).split("; ")[0]


def test_rows_over_the_models_context_are_refused_before_training(tmp_path):
    from harness.core.errors import HarnessError
    from harness.models.lm import LM
    from harness.models.loading import load_model
    from harness.training.datasets import load_kind, lookup

    loaded = load_model("tiny:nano")
    lm = LM(loaded.model, loaded.tokenizer)
    context = lm.encoder.context
    assert context == loaded.model.config.max_position_embeddings
    from harness.core.plugins import get_host
    from harness.training.datasets import dataset_params

    reg = get_host().registry
    for name, text in (("long", "word " * (context + 10)), ("huge", "x" * (64 * context + 1))):
        f = write_jsonl(tmp_path / f"{name}.jsonl", [{"prompt": "q", "completion": "fine"},
                                                     {"prompt": "q", "completion": text}])
        with pytest.raises(HarnessError, match=rf"{name}.jsonl: row 2: .*over the model's context of {context:,}"):
            load_kind(lookup(str(f), reg), dataset_params({}, where="x"), "demonstrations", lm.encoder)


def test_data_paths_resolve_from_the_suites_folder(tmp_path, monkeypatch):
    from harness.core.plugins import get_host
    from harness.suite.expand import load_suite

    folder = tmp_path / "suites"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "d.jsonl", [{"prompt": "q", "completion": "a"}] * 4)
    suite = folder / "s.toml"
    suite.write_text('name = "d"\nmodels = ["tiny:nano"]\ntrain_data = ["data/d.jsonl"]\neval = ["didactic-r1"]\n'
                     "[methods.sft]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_suite(suite, get_host())
    (cell,) = loaded.cells
    assert os.path.samefile(cell.config.benchmark, folder / "data" / "d.jsonl")
    assert not os.path.isabs(cell.config.benchmark)  # relative: the cell id does not depend on the checkout's place
