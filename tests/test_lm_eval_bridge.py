"""The lm-eval bridge: lm-evaluation-harness runs tasks on our model through the ``LM`` adapter.

Offline throughout: task YAMLs from ``tests/data/lm_eval/*.yaml.in`` are filled with absolute paths
(GSM8K's train.jsonl and test.jsonl unpacked here from the copy shipped with the package, and a small
multiple-choice JSONL written here) into tmp_path and passed as
``include_path`` with ``include_defaults=false`` (indexing lm-eval's built-in tasks takes 15-30 s).
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from alignment_harness_plugins.benchmarks import gsm8k
from alignment_harness_plugins.benchmarks import lm_eval_bridge as bridge
from harness.core.context import EvalContext
from harness.core.data import Completion, Prompt
from harness.core.data import Sequence as Seq
from harness.core.errors import HarnessError
from harness.core.params import apply_overrides
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from tests.conftest import run_harness

pytest.importorskip("lm_eval")

TEMPLATES = Path(__file__).parent / "data" / "lm_eval"
EMBEDDED_GSM8K = gsm8k.EMBEDDED_DIR  # train.jsonl.gz and test.jsonl.gz
MC_DOCS = [
    {"question": "What is 2 + 2?", "choices": ["4", "5", "fish"], "label": 0},
    {"question": "The sky is", "choices": ["blue", "a spoon"], "label": 0},
    {"question": "Pick the last letter", "choices": ["a", "z"], "label": 1},
]


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lm_eval_tasks")
    mc = d / "mc.jsonl"
    mc.write_text("".join(json.dumps(doc) + "\n" for doc in MC_DOCS))
    gsm8k_dir = d / "gsm8k"
    gsm8k_dir.mkdir()
    for split in ("train", "test"):  # lm-eval reads plain JSONL files: unpack the shipped copy
        (gsm8k_dir / f"{split}.jsonl").write_bytes(gzip.decompress((EMBEDDED_GSM8K / f"{split}.jsonl.gz").read_bytes()))
    for template in TEMPLATES.glob("*.yaml.in"):
        text = template.read_text().replace("@GSM8K_DIR@", str(gsm8k_dir)).replace("@MC_FILE@", str(mc))
        (d / template.name.removesuffix(".in")).write_text(text)
    return d


@pytest.fixture(scope="module")
def tiny_lm() -> LM:
    loaded = load_model("tiny:nano", seed=0)
    return LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))


class ScriptedEngine:
    """Answers gsm8k questions: right ('#### <answer>') for the first test question, wrong otherwise."""

    name = "scripted"

    def __init__(self, right_question: str, right_answer: str) -> None:
        self.right_question, self.right_answer = right_question, right_answer
        self.calls: list[dict[str, Any]] = []

    def generate(self, prompts: Sequence[Prompt], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int | None = None) -> list[list[Completion]]:
        self.calls.append({"texts": [p.text for p in prompts], "ids": [p.ids for p in prompts],
                           "temperature": temperature, "max_new_tokens": max_new_tokens, "stop": tuple(stop)})
        out = []
        for p in prompts:
            last = p.text.rsplit("Question: ", 1)[1]
            text = f" So #### {self.right_answer}" if last.startswith(self.right_question) else " The answer is 7."
            # A stop string and what follows must be cut off by the bridge.
            out.append([Completion(prompt=p, ids=(), text=text + "\n\nQuestion: more", finish_reason="stop")])
        return out


def make_ctx(lm: LM, engine: Any = None, **overrides: Any) -> EvalContext:
    params = apply_overrides(bridge.LMEvalParams, overrides, where="test")
    return EvalContext(engine=engine or lm.engine, lm=lm, encoder=lm.encoder, params=params, seed=0,
                       limit=params.limit)


def req(*args: Any) -> SimpleNamespace:
    return SimpleNamespace(args=args)


# -- the adapter on its own ------------------------------------------------------------------------------


def test_loglikelihood_matches_lm_logprobs_and_greedy(tiny_lm: LM) -> None:
    lm = bridge.harness_lm_class()(make_ctx(tiny_lm))
    tok = tiny_lm.tokenizer
    context, continuation = "Question: What is 2 + 2?\nAnswer:", " 4 apples"
    [(logp, greedy)] = lm.loglikelihood([req(context, continuation)])
    ctx_ids = tok.encode(context)
    cont_ids = tok.encode(context + continuation)[len(ctx_ids):]
    want = tiny_lm.logprobs([Seq(Prompt(tuple(ctx_ids)), tuple(cont_ids))])[0].item()
    assert logp == pytest.approx(want, abs=1e-5)
    # is_greedy: each continuation token is the argmax after the tokens before it.
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=torch.tensor([ctx_ids + cont_ids])).logits[0]
    argmax = logits[len(ctx_ids) - 1 : -1].argmax(-1).tolist()
    assert greedy == (argmax == cont_ids)
    # The greedy continuation itself is greedy.
    best = tok.decode([argmax[0]])
    assert lm.loglikelihood([req(context, best)])[0][1] is True
    # Trailing whitespace of the context moves to the continuation.
    assert lm.encode_pair("Answer: ", "4") == lm.encode_pair("Answer:", " 4")
    assert lm.loglikelihood([req("Answer: ", "4")])[0][0] == pytest.approx(
        lm.loglikelihood([req("Answer:", " 4")])[0][0])
    # An empty context is conditioned on the prefix token (BOS).
    e_ctx, e_cont = lm.encode_pair("", "hi")
    assert e_ctx == [tok.bos_token_id] and e_cont == tok.encode("hi", add_special_tokens=False)
    # Rolling log-likelihood of a short text = the text scored after BOS.
    text = "The cat sat on the mat."
    [rolling] = lm.loglikelihood_rolling([req(text)])
    ids = tuple(tok.encode(text))
    assert rolling == pytest.approx(tiny_lm.logprobs([Seq(Prompt((tok.bos_token_id,)), ids)])[0].item(), abs=1e-4)
    # ...and over several windows every token is still predicted once.
    small = bridge.harness_lm_class()(make_ctx(tiny_lm), max_length=8)
    assert small.loglikelihood_rolling([req(text)])[0] < 0


def test_gen_kwargs_are_normalised_like_lm_eval() -> None:
    kw = bridge.normalize_gen_kwargs({"until": "Q:", "do_sample": False, "temperature": 0.7}, 256)
    assert kw == {"until": ["Q:"], "max_gen_toks": 256, "temperature": 0.0, "top_p": 1.0}
    kw = bridge.normalize_gen_kwargs({"temperature": 0.5, "max_new_tokens": 9, "top_p": 0.9}, 256)
    assert kw == {"until": [], "max_gen_toks": 9, "temperature": 0.5, "top_p": 0.9}
    assert bridge.normalize_gen_kwargs({"do_sample": True}, 3)["temperature"] == 1.0


# -- through lm_eval.simple_evaluate -------------------------------------------------------------------


def test_generate_until_task_maps_metrics_and_records(tiny_lm: LM, tasks_dir: Path) -> None:
    first = json.loads((tasks_dir / "gsm8k" / "test.jsonl").open().readline())
    answer = first["answer"].split("#### ")[-1].strip()
    engine = ScriptedEngine(first["question"][:40], answer)
    ctx = make_ctx(tiny_lm, engine, task="gsm8k_local", include_path=str(tasks_dir), include_defaults=False,
                   limit=3, max_gen_toks=7)
    res = bridge.evaluate(ctx)
    m = res.metrics
    # Doc 0 answered '#### <answer>' (right on both filters); docs 1-2 'The answer is 7.' (wrong: the
    # flexible filter takes the last number, 7, and strict finds no '####').
    assert m["exact_match,strict-match"] == pytest.approx(1 / 3)
    assert m["exact_match,flexible-extract"] == pytest.approx(1 / 3)
    assert "exact_match_stderr,strict-match" in m and m["n_samples"] == 3
    # lm-eval's generation settings reached the engine; the prompt is 5-shot, left-truncated.
    call = engine.calls[0]
    assert call["temperature"] == 0.0 and call["max_new_tokens"] == 7
    assert call["stop"] == ("Question:", "</s>", "<|im_end|>")
    assert call["texts"][0].count("Question: ") == 6 and call["texts"][0].endswith("Answer:")
    assert all(len(ids) <= 512 - 7 for ids in call["ids"])
    # Records: one per (document, filter), responses cut at the stop string.
    assert len(res.records) == 6
    rec = next(r for r in res.records if r["doc_id"] == 0 and r["filter"] == "strict-match")
    assert rec["task"] == "gsm8k_local" and rec["exact_match"] == 1.0 and rec["filtered_resps"] == [answer]
    assert rec["resps"] == [[f" So #### {answer}\n\n"]] and rec["prompt"].endswith(first["question"] + "\nAnswer:")
    assert rec["arguments"][0][0]["until"] == ["Question:", "</s>", "<|im_end|>"]


def test_multiple_choice_task_uses_loglikelihood(tiny_lm: LM, tasks_dir: Path) -> None:
    ctx = make_ctx(tiny_lm, task="tiny_mc", include_path=str(tasks_dir), include_defaults=False)
    rng = torch.get_rng_state()
    res = bridge.evaluate(ctx)
    assert torch.equal(rng, torch.get_rng_state())  # simple_evaluate's re-seeding is undone
    lm = bridge.harness_lm_class()(ctx)
    # acc by hand: the choice with the highest log-likelihood after "Question: ...\nAnswer:".
    correct = []
    for doc in MC_DOCS:
        context = f"Question: {doc['question']}\nAnswer:"
        scores = []
        for choice in doc["choices"]:
            c_ids, k_ids = lm.encode_pair(context, choice)
            scores.append(tiny_lm.logprobs([Seq(Prompt(tuple(c_ids)), tuple(k_ids))])[0].item())
        correct.append(float(max(range(len(scores)), key=scores.__getitem__) == doc["label"]))
    assert res.metrics["acc,none"] == pytest.approx(sum(correct) / len(correct))
    assert "acc_norm,none" in res.metrics and res.metrics["n_samples"] == 3
    rec = next(r for r in res.records if r["doc_id"] == 0)
    assert rec["arguments"] == [[" 4"], [" 5"], [" fish"]] and rec["acc"] == correct[0]
    assert len(rec["resps"]) == 3 and rec["resps"][0][0][0] < 0  # (logprob, is_greedy) per choice

    ppl = bridge.evaluate(make_ctx(tiny_lm, task="tiny_ppl", include_path=str(tasks_dir), include_defaults=False))
    words = sum(len(d["question"].split()) for d in MC_DOCS)
    total = sum(lm.loglikelihood_rolling([req(d["question"])])[0] for d in MC_DOCS)
    assert ppl.metrics["word_perplexity,none"] == pytest.approx(math.exp(-total / words), rel=1e-4)


def test_errors_are_one_line(tiny_lm: LM, tasks_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HarnessError, match="--set task="):
        bridge.evaluate(make_ctx(tiny_lm))
    with pytest.raises(HarnessError, match="no task 'tiny_mcq'.*did you mean 'tiny_mc'"):
        bridge.evaluate(make_ctx(tiny_lm, task="tiny_mcq", include_path=str(tasks_dir), include_defaults=False))
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed
    with pytest.raises(HarnessError, match=r"pip install 'alignment-harness\[lm-eval\]'") as err:
        bridge.evaluate(make_ctx(tiny_lm, task="gsm8k"))
    assert "\n" not in err.value.message


def test_registered_names() -> None:
    names = []
    bridge.register_benchmarks(lambda spec: names.append(spec))
    assert [s.name for s in names] == ["lm-eval", *(f"lm-eval:{t}" for t in bridge.COMMON_TASKS)]
    assert "task" not in bridge.LMEvalTaskParams.__dataclass_fields__
    assert names[0].params is bridge.LMEvalParams


def test_harness_eval_end_to_end(tasks_dir: Path) -> None:
    proc = run_harness(
        "eval", "--model", "tiny:nano", "--benchmark", "lm-eval", "--set", "task=gsm8k_local",
        "--set", f"include_path={tasks_dir}", "--set", "include_defaults=false", "--set", "limit=2",
        "--set", "max_gen_toks=4", "--set", "num_fewshot=1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "lm-eval/exact_match,strict-match" in proc.stdout and "lm-eval/n_samples" in proc.stdout
