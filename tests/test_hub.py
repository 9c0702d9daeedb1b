"""The one reader of a hub dataset's split (``harness.core.hub.load_split``), through both of its callers:
benchmarks' rows (``benchmark_data.hub_rows``) and training data (``training.datasets``), each keeping its own
shape. Nothing is downloaded: the "hub dataset" is a local folder of data files, which ``datasets.load_dataset``
resolves as it resolves a hub name (``HF_HUB_OFFLINE=1`` is set for every test in conftest.py), its cache in
``tmp_path``; the unreachable hub is the discard port of 127.0.0.1 (nothing listens there)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.core import hub
from harness.core.data import rows_sha256
from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.evaluation import benchmark_data
from harness.models.loading import load_model
from harness.training.datasets import dataset_params, load_kind, lookup

ROWS = [{"prompt": f"add {i} {i}", "completion": f" {2 * i}"} for i in range(4)]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dataset with one split, ``test``, as a folder of JSONL files; the datasets cache kept in tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    benchmark_data._hub_rows.cache_clear()
    d = tmp_path / "org-adds"
    d.mkdir()
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return d


def test_both_callers_read_a_split_and_keep_their_shape(folder: Path) -> None:
    rows = benchmark_data.hub_rows(str(folder), None, "test", required=("prompt",), types={"prompt": str},
                                   where="bench", hint="use path=")
    assert list(rows) == ROWS and rows.sha256 == rows_sha256(ROWS)  # plain rows, hashed as the file's rows
    spec = lookup(f"hf:{folder}@test", Registry())
    encoder = load_model("tiny:nano", seed=0).encoder
    demos = load_kind(spec, dataset_params({}, where="t"), "demonstrations", encoder)
    assert [d.prompt.text for d in demos] == [r["prompt"] for r in ROWS]
    two = load_kind(spec, dataset_params({"limit": 2}, where="t"), "demonstrations", encoder)  # Dataset.select
    assert [d.prompt.text for d in two] == [r["prompt"] for r in ROWS[:2]]


def test_a_missing_split_is_the_same_one_line_for_both_callers(folder: Path) -> None:
    what = f"can't load the Hugging Face dataset '{folder}' split 'train': no such split"
    with pytest.raises(HarnessError) as bench:
        benchmark_data.hub_rows(str(folder), None, "train", where="bench", hint="use path=")
    assert bench.value.message.startswith(f"bench: {what}") and bench.value.message.endswith("; use path=")
    assert "'test'" in bench.value.message  # the splits there are
    spec = lookup(f"hf:{folder}@train", Registry())
    with pytest.raises(HarnessError) as train:
        load_kind(spec, dataset_params({}, where="t"), "demonstrations", load_model("tiny:nano", seed=0).encoder)
    msg = train.value.message
    assert msg.startswith(f"dataset 'hf:{folder}@train': {what}") and msg.endswith("--set data.path=FILE_OR_FOLDER")
    assert "\n" not in bench.value.message + msg


def test_an_unreachable_hub_fails_at_once_for_both_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    benchmark_data._hub_rows.cache_clear()
    start = time.perf_counter()
    with pytest.raises(HarnessError, match=r"^bench: can't load the Hugging Face dataset 'org/none' split 'test': "
                                           r"the hub is unreachable \(cannot connect to 127\.0\.0\.1:9.*; use path=$"):
        benchmark_data.hub_rows("org/none", None, "test", where="bench", hint="use path=")
    spec = lookup("hf:org/none:cfg@train", Registry())
    with pytest.raises(HarnessError, match=r"^dataset 'hf:org/none:cfg@train': can't load the Hugging Face dataset "
                                           r"'org/none' \(cfg\) split 'train': the hub is unreachable .*"
                                           r"--set data\.path=FILE_OR_FOLDER$"):
        load_kind(spec, dataset_params({}, where="t"), "prompts", load_model("tiny:nano", seed=0).encoder)
    assert time.perf_counter() - start < 20  # no retries of the datasets library


def test_offline_set_after_import_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HF_HUB_OFFLINE set after the libraries read it at import (as conftest.py sets it for every test): the
    load reads the cache only, rather than trying the hub with the library's retries; the libraries' own flag
    is as it was afterwards. Any request would go to the discard port of 127.0.0.1; the caches are empty."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(HarnessError, match=r"^w: can't load the Hugging Face dataset 'org/none' split 'test': the "
                                           r"hub is offline .*\(OfflineModeIsEnabled\)\); h$"):
        hub.load_split("org/none", None, "test", where="w", hint="h")
    assert time.perf_counter() - start < 10 and datasets.config.HF_HUB_OFFLINE is False
