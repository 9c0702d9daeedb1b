"""GSM8K as lm-eval runs it: filters, normalisation, few-shot prompts, evaluation, data, reward, errors.

Offline. Real data is the copy shipped with the package (``path`` unset: ``g.EMBEDDED_DIR``); tests of other
copies (a local ``path``, the hub) write their own files or make the hub unreachable.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import alignment_harness_plugins.benchmarks.gsm8k as g
from harness.core.context import DataContext, EvalContext
from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError
from harness.core.params import apply_overrides
from harness.core.registry import Registry
from harness.evaluation import benchmark_data
from harness.models.text import PromptEncoder
from harness.models.tiny import build_tokenizer
from tests.conftest import run_harness

DATA = g.EMBEDDED_DIR  # the copy shipped with the package: train.jsonl.gz, test.jsonl.gz
TOKENIZER = build_tokenizer()
ENCODER = PromptEncoder(TOKENIZER)


def _specs() -> dict:
    registry = Registry()
    g.register_benchmarks(registry.register_callback("benchmark", "gsm8k"))
    return registry.specs["benchmark"]


SPECS = _specs()


def _params(chat: bool = False, **overrides: Any) -> Any:
    cls = g.GSM8KChatParams if chat else g.GSM8KParams
    return cls(**overrides)  # path unset: the embedded copy


def _rows(path: Path) -> list[dict]:
    text = gzip.decompress(path.read_bytes()).decode() if path.name.endswith(".gz") else path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- registration --------------------------------------------------------------------------------------------


def test_registered_specs() -> None:
    assert set(SPECS) == {"gsm8k", "gsm8k-chat"}
    assert SPECS["gsm8k"].version == "3.0" and SPECS["gsm8k-chat"].version == "1"
    assert SPECS["gsm8k"].params is g.GSM8KParams and SPECS["gsm8k-chat"].params is g.GSM8KChatParams
    for spec in SPECS.values():
        assert spec.provides == {"demonstrations", "prompts", "reward"}  # no preference pairs in GSM8K
        assert "2110.14168" in spec.paper and "lm-evaluation-harness gsm8k v3.0" in spec.paper
    p = g.GSM8KParams()
    assert (p.path, p.hub_name, p.hub_config, p.limit, p.num_fewshot, p.fewshot_seed, p.max_new_tokens) == (
        None,
        "openai/gsm8k",
        "main",
        None,
        5,
        1234,
        256,
    )


# -- filters and normalisation (lm-eval's regexes) ---------------------------------------------------------


@pytest.mark.parametrize(
    "text,strict,flexible",
    [
        ("so she makes $18 every day.\n#### 18", "18", "18"),
        ("The answer is $1,000.", "[invalid]", "$1,000."),  # lm-eval's own example
        ("The answer is 72", "[invalid]", "72"),  # strict needs '#### '
        ("####72", "[invalid]", "72"),  # no space after ####: strict fails, flexible still finds it
        ("3 apples and 12 pears, 15 in all", "[invalid]", "15"),  # flexible: the LAST number
        ("#### 5\n#### 6", "5", "6"),  # strict: the FIRST match
        ("#### -5", "-5", "-5"),  # negatives
        ("it is 7", "[invalid]", "7"),  # one digit: the second group of the flexible regex
        ("no numbers here", "[invalid]", "[invalid]"),
        ("", "[invalid]", "[invalid]"),
    ],
)
def test_filters(text: str, strict: str, flexible: str) -> None:
    assert g.extract(text) == {"strict-match": strict, "flexible-extract": flexible}


def test_normalisation_and_exact_match() -> None:
    reference = "She has 400 + 600 = <<400+600=1000>>1,000 dollars.\n#### 1,000"
    assert g.normalize(reference) == "1000"  # '(?s).*#### ' strips the solution down to its number
    assert g.normalize("$1,000.") == "1000"
    assert g.score("The answer is $1,000.", reference) == {"strict-match": False, "flexible-extract": True}
    assert g.score("so 1,000 in total.\n#### 1,000", reference) == {
        "strict-match": True,
        "flexible-extract": True,
    }
    assert g.score("#### 18.", "x\n#### 18") == {
        "strict-match": True,
        "flexible-extract": True,
    }  # trailing '.'
    assert g.score("#### -3", "#### -3")["strict-match"] and not g.score("#### 3", "#### -3")["strict-match"]
    assert not g.exact_match("5.0", "#### 5")  # no numeric comparison, as in lm-eval
    assert not g.exact_match(" 5", "5")  # and no stripping
    assert not g.exact_match("[invalid]", "#### 5")
    assert g.normalize("ABC") == "abc"  # ignore_case
    assert g.final_answer(reference) == "1,000"


def test_mean_stderr_is_lm_evals() -> None:
    assert g.mean_stderr([1.0, 0.0, 0.0]) == pytest.approx(1 / 3)  # sqrt(1/3) / sqrt(3)
    assert g.mean_stderr([1.0, 1.0]) == 0.0
    assert math.isnan(g.mean_stderr([1.0]))  # lm-eval: "N/A"


# -- prompts ---------------------------------------------------------------------------------------------------


def test_fewshot_prompt_format_and_shots() -> None:
    p = _params()
    train, test = g.load_split(p, "train"), g.load_split(p, "test")
    assert (len(train), len(test)) == (7473, 1319)
    rng = random.Random(1234)
    shots = [g.sample_shots(train, item, 5, rng) for item in test[:4]]
    # lm-eval's sampler: one Random(1234), rnd.sample(train_docs, 5) per doc in order; same picks as indices.
    lm_eval_rng = random.Random(1234)
    for idx in shots:
        assert [train[j] for j in idx] == lm_eval_rng.sample(list(train), 5)
    assert len({tuple(s) for s in shots}) == 4  # different shots per item, reproducible from the seed
    text = g.fewshot_text(test[0].question, [train[j] for j in shots[0]])
    expected = "".join(f"Question: {train[j].question}\nAnswer: {train[j].answer}\n\n" for j in shots[0])
    assert text == expected + f"Question: {test[0].question}\nAnswer:"
    assert text.startswith("Question: ") and text.endswith("\nAnswer:") and text.count("\nAnswer:") == 6
    train_questions = {t.question for t in train}
    blocks = text.split("\n\n")
    assert all(b.startswith("Question: ") for b in blocks)
    assert sum(b.split("\nAnswer:")[0].removeprefix("Question: ") in train_questions for b in blocks) == 5
    assert g.question_text("q") == "Question: q\nAnswer:"
    assert g.stop_strings(TOKENIZER) == ("Question:", "</s>", "<|im_end|>", "<|eos|>")


def test_same_split_shots_exclude_the_item_itself() -> None:
    pool = [g.Problem(f"q{i}", f"#### {i}") for i in range(6)]
    rng = random.Random(0)
    for item in pool:
        idx = g.sample_shots(pool, item, 5, rng, same_split=True)
        assert len(idx) == 5 and item not in [pool[j] for j in idx]
    with pytest.raises(HarnessError, match="num_fewshot=6"):
        g.sample_shots(pool, pool[0], 6, random.Random(0), same_split=True)
    assert g.sample_shots(pool, pool[0], 0, rng) == []


# -- evaluation with an engine of exact outputs ------------------------------------------------------------


class QueueEngine:
    """Returns queued completion texts in order and records each call.

    It stands in for a model where the exact output matters (scoring and aggregation are checked
    against known answers); the real-model path is covered by the tiny-model test below.
    """

    name = "queue"

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)
        self.calls: list[tuple[list[Prompt], dict[str, Any]]] = []

    def generate(self, prompts: list[Prompt], **kwargs: Any) -> list[list[Completion]]:
        self.calls.append((list(prompts), kwargs))
        return [[Completion(p, (), self.texts.pop(0), "stop")] for p in prompts]


def _eval_ctx(engine: Any, params: Any, *, seed: int = 7, limit: int | None = None, log: list | None = None):
    progress = (lambda msg: log.append(msg)) if log is not None else (lambda _msg: None)
    return EvalContext(
        engine=engine, lm=None, encoder=ENCODER, params=params, seed=seed, limit=limit, progress=progress
    )


def test_evaluate_aggregates_both_filters() -> None:
    test = g.load_split(_params(), "test")[:3]
    answers = [g.final_answer(t.answer) for t in test]
    assert answers == ["18", "3", "70000"]
    engine = QueueEngine(
        [
            "She sells 9 eggs for $2 each.\n#### 18",  # right under both filters
            f"It takes {answers[1]} bolts in total.",  # no '####': only flexible is right
            "The profit is 5 dollars.\n#### 5",  # wrong
        ]
    )
    log: list[str] = []
    result = SPECS["gsm8k"].evaluate(_eval_ctx(engine, _params(chunk_size=2), limit=3, log=log))
    m = result.metrics
    assert m["exact_match,strict-match"] == pytest.approx(1 / 3)
    assert m["exact_match,flexible-extract"] == pytest.approx(2 / 3)
    assert m["exact_match_stderr,strict-match"] == pytest.approx(1 / 3)
    assert m["exact_match_stderr,flexible-extract"] == pytest.approx(1 / 3)
    assert m["answered,strict-match"] == pytest.approx(2 / 3) and m["answered,flexible-extract"] == 1.0
    assert set(m) == {f"{k},{f}" for k in ("exact_match", "exact_match_stderr", "answered") for f in g.FILTERS}
    # Two chunks (2 + 1 prompts), each greedy with lm-eval's settings; progress after each.
    assert [len(prompts) for prompts, _ in engine.calls] == [2, 1] and len(log) == 2
    for _, kwargs in engine.calls:
        assert kwargs == {
            "n": 1,
            "temperature": 0.0,
            "top_p": 1.0,  # the engines' default: greedy decoding ignores it
            "max_new_tokens": 256,
            "seed": 7,
            "stop": ("Question:", "</s>", "<|im_end|>", "<|eos|>"),
        }
    prompts = [p for call, _ in engine.calls for p in call]
    train = g.load_split(_params(), "train")
    rng = random.Random(1234)
    for item, prompt, record in zip(test, prompts, result.records, strict=True):
        shots = g.sample_shots(train, item, 5, rng)
        text = g.fewshot_text(item.question, [train[j] for j in shots])
        assert prompt.text == text and prompt.ids == ENCODER.prompt(text, raw=True).ids  # raw: no template
        assert record["shots"] == shots
    r0, r1, r2 = result.records
    assert r0["index"] == 0 and r0["question"] == test[0].question and r0["target"] == "18"
    assert r0["completion"].endswith("#### 18") and r0["finish_reason"] == "stop"
    assert r0["extracted"] == {"strict-match": "18", "flexible-extract": "18"}
    assert r0["correct"] == {"strict-match": True, "flexible-extract": True}
    assert r1["extracted"] == {"strict-match": "[invalid]", "flexible-extract": "3"}
    assert r1["correct"] == {"strict-match": False, "flexible-extract": True}
    assert r2["correct"] == {"strict-match": False, "flexible-extract": False}
    assert r2["target"] == "70000" and r2["extracted"]["flexible-extract"] == "5"


def test_shots_do_not_depend_on_limit_and_limit_comes_from_ctx_or_params() -> None:
    five = SPECS["gsm8k"].evaluate(_eval_ctx(QueueEngine(["#### 0"] * 5), _params(), limit=5))
    two = SPECS["gsm8k"].evaluate(_eval_ctx(QueueEngine(["#### 0"] * 2), _params(limit=2)))
    assert len(five.records) == 5 and len(two.records) == 2
    assert [r["shots"] for r in two.records] == [r["shots"] for r in five.records[:2]]
    zero = SPECS["gsm8k"].evaluate(_eval_ctx(QueueEngine(["#### 0"]), _params(num_fewshot=0), limit=1))
    assert zero.records[0]["shots"] == []
    assert math.isnan(zero.metrics["exact_match_stderr,strict-match"])  # one item: lm-eval's "N/A"


def test_chat_variant_uses_the_template_and_stops_at_eos_only() -> None:
    test = g.load_split(_params(chat=True), "test")[:2]
    engine = QueueEngine(["Step by step...\n#### 18", "#### 4"])
    result = SPECS["gsm8k-chat"].evaluate(_eval_ctx(engine, _params(chat=True), limit=2))
    assert result.metrics["exact_match,strict-match"] == 0.5
    ((prompts, kwargs),) = engine.calls
    assert kwargs["stop"] == () and kwargs["max_new_tokens"] == 512 and kwargs["temperature"] == 0.0
    assert prompts[0].text == g.chat_text(test[0].question) and '"#### <number>"' in prompts[0].text
    assert prompts[0].ids == ENCODER.prompt(g.chat_text(test[0].question)).ids
    assert prompts[0].ids[-1] == TOKENIZER.convert_tokens_to_ids("<|assistant|>")  # the generation prompt
    assert "shots" not in result.records[0]


def test_single_file_is_every_split_and_shots_skip_the_item(tmp_path: Path) -> None:
    file = tmp_path / "mini.jsonl"
    file.write_text(
        "".join(json.dumps({"question": f"q{i}?", "answer": f"so\n#### {i}"}) + "\n" for i in range(7))
    )
    engine = QueueEngine([f"#### {i}" for i in range(7)])
    result = SPECS["gsm8k"].evaluate(_eval_ctx(engine, g.GSM8KParams(path=str(file))))
    assert result.metrics["exact_match,strict-match"] == 1.0 and len(result.records) == 7
    for record in result.records:
        assert len(record["shots"]) == 5 and record["index"] not in record["shots"]


# -- the real tiny model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gsm8k", "gsm8k-chat"])
def test_end_to_end_with_the_tiny_model(name: str) -> None:
    from harness.engines.hf import HFEngine
    from harness.models.lm import LM
    from harness.models.loading import load_model

    loaded = load_model("tiny:nano", seed=0)
    lm = LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))
    params = _params(chat=name == "gsm8k-chat", limit=2, max_new_tokens=8)
    ctx = EvalContext(engine=lm.engine, lm=lm, encoder=lm.encoder, params=params, seed=0, limit=2)
    result = SPECS[name].evaluate(ctx)
    assert len(result.records) == 2
    for record in result.records:
        assert isinstance(record["completion"], str) and set(record["extracted"]) == set(g.FILTERS)
        # each record is the completion scored afresh (lm-eval's rules: tests/test_gsm8k_lm_eval_rules.py)
        assert record["extracted"] == g.extract(record["completion"])
        assert record["correct"] == g.score(record["completion"], _answer(record))
    for f in g.FILTERS:  # the metrics are the records' means, and the stderr lm-eval's
        values = [float(r["correct"][f]) for r in result.records]
        assert result.metrics[f"exact_match,{f}"] == pytest.approx(sum(values) / len(values))
        answered = sum(r["extracted"][f] != g.FALLBACK for r in result.records) / len(result.records)
        assert result.metrics[f"answered,{f}"] == pytest.approx(answered)
        stderr = result.metrics[f"exact_match_stderr,{f}"]
        assert (math.isnan(stderr) and math.isnan(g.mean_stderr(values))) or stderr == pytest.approx(
            g.mean_stderr(values))


def _answer(record: dict) -> str:
    """The reference solution of a record's question (from the local copy), for rescoring."""
    for row in _rows(DATA / "test.jsonl.gz"):
        if row["question"] == record["question"]:
            return row["answer"]
    raise AssertionError(f"question not in {DATA}: {record['question'][:60]}")


# -- data errors -----------------------------------------------------------------------------------------------


def test_hub_unreachable_is_one_line_and_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets
    import huggingface_hub.constants

    # The offline flags are read when the libraries are imported; patch the live values too. An empty
    # cache makes sure nothing cached on this machine answers instead of the hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    benchmark_data._hub_rows.cache_clear()
    start = time.perf_counter()
    with pytest.raises(HarnessError) as info:
        SPECS["gsm8k"].evaluate(_eval_ctx(QueueEngine([]), g.GSM8KParams(path="hf:openai/gsm8k"), limit=1))
    assert time.perf_counter() - start < 20
    message = info.value.message
    assert "\n" not in message and "--set path=" in message and "openai/gsm8k" in message


def test_bad_rows_and_paths_name_the_place(tmp_path: Path) -> None:
    good = json.dumps({"question": "q?", "answer": "#### 1"})
    (tmp_path / "train.jsonl").write_text(good + "\n")
    (tmp_path / "test.jsonl").write_text(good + "\n\n" + json.dumps({"question": "no answer"}) + "\n")
    with pytest.raises(HarnessError, match=rf"{tmp_path / 'test.jsonl'}:3: missing field\(s\) answer"):
        SPECS["gsm8k-chat"].evaluate(
            _eval_ctx(QueueEngine(["#### 1"] * 2), g.GSM8KChatParams(path=str(tmp_path)))
        )
    (tmp_path / "train.jsonl").write_text("{not json\n")
    with pytest.raises(HarnessError, match=rf"{tmp_path / 'train.jsonl'}:1: not valid JSON"):
        SPECS["gsm8k"].data("prompts", DataContext(g.GSM8KParams(path=str(tmp_path)), ENCODER, 0))
    with pytest.raises(HarnessError, match="no such file or directory.*path="):
        g.load_split(g.GSM8KParams(path=str(tmp_path / "nowhere")), "test")
    (tmp_path / "train.jsonl").unlink()
    with pytest.raises(HarnessError, match="has no train.jsonl"):
        g.load_split(g.GSM8KParams(path=str(tmp_path)), "train")
    with pytest.raises(HarnessError, match="limit must be a positive"):
        SPECS["gsm8k-chat"].evaluate(
            _eval_ctx(QueueEngine([]), g.GSM8KChatParams(path=str(tmp_path)), limit=0)
        )
    for bad, key in (({"chunk_size": 0}, "chunk_size"), ({"num_fewshot": -1}, "num_fewshot")):
        with pytest.raises(HarnessError, match=rf"^gsm8k: parameter '{key}' must be >= "):  # its declared bound,
            apply_overrides(g.GSM8KParams, bad, where="gsm8k")  # checked where a value is given


# -- training data and reward ----------------------------------------------------------------------------------


def test_demonstrations_and_prompts() -> None:
    eos = TOKENIZER.eos_token_id
    train = g.load_split(_params(), "train")
    for name in ("gsm8k", "gsm8k-chat"):
        chat = name == "gsm8k-chat"
        ctx = DataContext(params=_params(chat=chat, train_limit=3), encoder=ENCODER, seed=0)
        demos = SPECS[name].data("demonstrations", ctx)
        prompts = SPECS[name].data("prompts", ctx)
        assert len(demos) == len(prompts) == 3
        for i, (demo, prompt) in enumerate(zip(demos, prompts, strict=True)):
            assert demo.prompt.ids and demo.response and demo.response[-1] == eos
            assert prompt.ids == demo.prompt.ids and dict(prompt.meta) == {
                "index": i,
                "answer": g.final_answer(train[i].answer),
            }
            response = ENCODER.decode(demo.response)
            if chat:
                assert prompt.text == g.chat_text(train[i].question) and response == train[i].answer
                assert prompt.ids == ENCODER.prompt(prompt.text).ids  # through the chat template
            else:
                assert prompt.text == f"Question: {train[i].question}\nAnswer:"  # zero-shot, raw
                assert prompt.ids == ENCODER.prompt(prompt.text, raw=True).ids
                assert response == " " + train[i].answer  # target delimiter + full solution
        with pytest.raises(HarnessError, match="not preferences"):
            SPECS[name].data("preferences", ctx)
    assert dict(prompts[0].meta)["answer"] == "72"
    test_ctx = DataContext(params=_params(train_limit=1), encoder=ENCODER, seed=0, split="test")
    assert SPECS["gsm8k"].data("prompts", test_ctx)[0].meta["answer"] == "18"


def test_reward() -> None:
    prompt = ENCODER.prompt("Question: ..\nAnswer:", {"answer": "1,000"}, raw=True)
    reward = SPECS["gsm8k"].reward
    assert SPECS["gsm8k-chat"].reward is reward

    def r(text: str) -> float:
        return reward(prompt, Completion(prompt, (), text))

    assert r("so 1000 in all.\n#### 1,000") == 1.0
    assert r("The answer is $1,000.") == 1.0  # flexible-extract: no '####' needed
    assert r("#### 1,000 and then 3 more") == 0.0  # flexible takes the last number
    assert r("#### 999") == 0.0 and r("I don't know") == 0.0
    with pytest.raises(HarnessError, match="meta"):
        reward(Prompt(ids=(1,)), Completion(Prompt(ids=(1,)), (), "#### 1"))


def test_oracles_on_the_whole_test_split() -> None:
    """Gold solutions score 100% strict; 'The answer is N' scores 0 strict and 100% flexible."""
    test = g.load_split(_params(), "test")
    assert len(test) == 1319
    params = _params(chunk_size=1319)
    gold = SPECS["gsm8k"].evaluate(_eval_ctx(QueueEngine([t.answer for t in test]), params)).metrics
    assert gold["exact_match,strict-match"] == 1.0
    plain = [f"The answer is {g.final_answer(t.answer)}." for t in test]
    said = SPECS["gsm8k"].evaluate(_eval_ctx(QueueEngine(plain), params)).metrics
    assert said["exact_match,strict-match"] == 0.0
    assert said["exact_match,flexible-extract"] == 1.0
    assert gold["answered,strict-match"] == 1.0 and said["answered,strict-match"] == 0.0


# -- which copy of the data: embedded, path, hub ---------------------------------------------------------------


def test_the_embedded_copy_is_the_default_and_its_hash_is_the_files_sha256sum(tmp_path: Path) -> None:
    """No path: the copy shipped in the package, whose content hash is the sha256sum of the original files
    (here: the embedded files unpacked), so a user's uncompressed copy of the same files hashes the same."""
    copy = g.data_copy(g.GSM8KParams())
    assert copy.copy == "embedded" and Path(copy.source) == DATA and dict(copy.parts) == g.EMBEDDED_SHA256
    for split in ("train", "test"):
        raw = gzip.decompress((DATA / f"{split}.jsonl.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == g.EMBEDDED_SHA256[split]
        (tmp_path / f"{split}.jsonl").write_bytes(raw)
    assert (DATA / "LICENSE").read_text().startswith("MIT License") and "openai/grade-school-math" in (
        DATA / "README.md").read_text()
    # A user's path wins over the embedded copy; the same rows give the same hashes, under the kind "path".
    mine = g.data_copy(g.GSM8KParams(path=str(tmp_path)))
    assert (mine.copy, mine.source, dict(mine.parts)) == ("path", str(tmp_path.resolve()), g.EMBEDDED_SHA256)
    assert mine.sha256 == copy.sha256
    # One changed row changes the hash of its split and of the copy: results from it can't pass as the same data.
    rows = _rows(tmp_path / "test.jsonl")
    rows[5]["answer"] = rows[5]["answer"].replace("####", "#### 1")
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    edited = g.data_copy(g.GSM8KParams(path=str(tmp_path)))
    assert edited.parts["train"] == g.EMBEDDED_SHA256["train"] and edited.parts["test"] != g.EMBEDDED_SHA256["test"]
    assert edited.sha256 != copy.sha256
    result = SPECS["gsm8k"].evaluate(_eval_ctx(QueueEngine(["#### 0"]), g.GSM8KParams(path=str(tmp_path)), limit=1))
    assert result.data == edited


def test_evaluate_records_the_embedded_copy() -> None:
    result = SPECS["gsm8k-chat"].evaluate(_eval_ctx(QueueEngine(["#### 18"]), _params(chat=True), limit=1))
    assert result.data is not None and result.data.copy == "embedded"
    assert result.data.as_dict() == {"copy": "embedded", "source": str(DATA), "sha256": result.data.sha256,
                                     "parts": g.EMBEDDED_SHA256}


def test_hub_is_named_with_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    p = g.GSM8KParams
    assert g.hub_source(p()) is None and g.hub_source(p(path="/x")) is None
    assert g.hub_source(p(path="hf:")) == ("openai/gsm8k", "main")
    assert g.hub_source(p(path="hf:me/gsm8k-copy")) == ("me/gsm8k-copy", "main")
    assert g.hub_source(p(path="hf:me/gsm8k-copy:socratic")) == ("me/gsm8k-copy", "socratic")
    # The hub's rows are hashed as the files are: the same rows give the embedded copy's hashes (the hub is
    # faked here: no network in the tests; only the loader is replaced).
    embedded = {s: g.load_split(p(), s) for s in ("train", "test")}
    rows = {s: [{"question": x.question, "answer": x.answer} for x in v] for s, v in embedded.items()}
    monkeypatch.setattr(benchmark_data, "hub_rows",
                        lambda name, config, split, **_: benchmark_data.Rows(rows[split]))
    hub = g.data_copy(p(path="hf:"))
    assert (hub.copy, hub.source, dict(hub.parts)) == ("hub", "openai/gsm8k:main", g.EMBEDDED_SHA256)


def test_a_damaged_embedded_copy_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for split in ("train", "test"):
        shutil.copy(DATA / f"{split}.jsonl.gz", tmp_path / f"{split}.jsonl.gz")
    rows = _rows(tmp_path / "test.jsonl.gz")[:-1]  # one row lost
    (tmp_path / "test.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    monkeypatch.setattr(g, "EMBEDDED_DIR", tmp_path)
    with pytest.raises(HarnessError, match=r"does not hold the shipped data .*reinstall") as info:
        g.load_split(g.GSM8KParams(), "test")
    assert "\n" not in info.value.message
    assert len(g.load_split(g.GSM8KParams(), "train")) == 7473  # the intact split still loads


def test_harness_eval_runs_offline_from_the_embedded_copy_and_records_it(tmp_path: Path) -> None:
    """`harness eval --benchmark gsm8k --set benchmark.limit=2` with no path and HF_HUB_OFFLINE=1 (set for
    every test): the embedded copy is read, named on stderr and recorded in --out and --json."""
    out = tmp_path / "eval.json"
    res = run_harness("eval", "--model", "tiny:nano", "--benchmark", "gsm8k", "--set", "benchmark.limit=2",
                      "--set", "max_new_tokens=8", "--json", "--out", str(out), env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    shown = json.loads(res.stdout)
    saved = json.loads(out.read_text())
    assert shown["data"] == saved["data"] == {"gsm8k": {
        "copy": "embedded", "source": str(DATA), "sha256": g.data_copy(g.GSM8KParams()).sha256,
        "parts": g.EMBEDDED_SHA256}}
    assert len(saved["records"]) == 2 and "gsm8k: data: embedded copy (sha256 " in res.stderr
