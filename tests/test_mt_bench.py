"""MT-Bench (FastChat single-answer grading) against a local judge server.

The judge is a real HTTP server on 127.0.0.1 (``http.server`` in a thread, OpenAI-compatible
``/v1/chat/completions``) standing in for a remote API judge such as GPT-4; the benchmark reaches it
through the real ``openai`` engine. Its rating depends on the graded answer's text: 10 when the answer
contains "good", else 2; "UNPARSABLE" answers get a judgment without a rating, "BRACKET" answers the
single-bracket form "[5]", and "wobbly" answers 4 or 6 depending on the request's seed. The evaluated
model is a scripted engine with fixed answers per question turn (exact outputs matter here), plus one
end-to-end ``harness eval`` run of the real tiny model in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alignment_harness_plugins.benchmarks import mt_bench
from harness.core.context import EvalContext
from harness.core.data import Completion, Prompt, rows_sha256
from harness.core.errors import HarnessError
from harness.core.params import apply_overrides
from harness.evaluation.judge import JudgmentCache, chat_prompt, parse_rating, plain_chat
from harness.models.text import PromptEncoder
from harness.models.tiny import build_tokenizer
from tests.conftest import run_harness

MT_DATA = mt_bench.EMBEDDED_DIR  # the copy shipped with the package (path unset)

# question id -> [turn-1 answer, turn-2 answer]
ANSWERS = {
    81: ["A good travel post.", "A bad rewrite."],  # writing: 10, 2
    101: ["good: you are in second place.", "UNPARSABLE"],  # reasoning (reference): 10, dropped
    111: ["good: the area is 3.", "BRACKET"],  # math (reference): 10, 5
    131: ["nope", "good json"],  # extraction: 2, 10
}


# -- the judge server ----------------------------------------------------------------------------------


class JudgeServer:
    """Records every request body; answers with a rating that depends on the graded answer."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @staticmethod
    def graded_answer(user: str) -> str:
        if "[The Start of Assistant's Answer]\n" in user:  # single-v1 / single-math-v1
            return user.split("[The Start of Assistant's Answer]\n", 1)[1].split("\n[The End of Assistant's Answer]")[0]
        tail = user.rsplit("### Assistant A:\n", 1)[1]  # the multi-turn prompts: the second answer
        return tail.split("\n\n<|The End of Assistant A's Conversation with User|>")[0]

    def reply(self, body: dict[str, Any]) -> str:
        answer = self.graded_answer(body["messages"][-1]["content"])
        if "UNPARSABLE" in answer:
            return "The answer is odd; I cannot give a number."
        if "BRACKET" in answer:
            return "Some explanation. Rating: [5]"
        if "wobbly" in answer:
            return f"Rating: [[{4 if body.get('seed', 0) % 2 == 0 else 6}]]"
        return "Explanation. Rating: [[10]]" if "good" in answer else "Explanation. Rating: [[2]]"


def _handler(server: JudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with server.lock:
                server.bodies.append(body)
            text = server.reply(body)
            out = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                           "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return Handler


@pytest.fixture
def judge() -> Iterator[tuple[JudgeServer, str]]:
    fake = JudgeServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


# -- the evaluated model: scripted answers -----------------------------------------------------------------


class ScriptedEngine:
    """Answers from ANSWERS by (question id, turn); records every call. As a 'self' judge it rates [[7]]."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def generate(self, prompts: Sequence[Prompt], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int | None = None) -> list[list[Completion]]:
        self.calls.append({"prompts": list(prompts), "temperature": temperature, "max_new_tokens": max_new_tokens,
                           "seed": seed})
        out = []
        for p in prompts:
            if "question_id" in p.meta:
                text = "  " + ANSWERS[p.meta["question_id"]][p.meta["turn"] - 1] + "\n"  # stripped by the benchmark
            else:
                text = "I am judging myself. Rating: [[7]]"
            out.append([Completion(prompt=p, ids=(), text=text, finish_reason="stop")] * n)
        return out


def make_dir(tmp_path: Path) -> Path:
    """FastChat's own layout (reference_answer/gpt-4.jsonl) with 4 of the real questions."""
    d = tmp_path / "fastchat"
    (d / "reference_answer").mkdir(parents=True)
    rows = [json.loads(line) for line in (MT_DATA / "question.jsonl").read_text().splitlines() if line.strip()]
    (d / "question.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["question_id"] in ANSWERS))
    shutil.copy(MT_DATA / "judge_prompts.jsonl", d / "judge_prompts.jsonl")
    shutil.copy(MT_DATA / "reference_answer_gpt-4.jsonl", d / "reference_answer" / "gpt-4.jsonl")
    return d


def run_eval(engine: ScriptedEngine, **overrides: Any):
    params = apply_overrides(mt_bench.MTBenchParams, overrides, where="test")
    tokenizer = build_tokenizer()
    ctx = EvalContext(engine=engine, lm=None, encoder=PromptEncoder(tokenizer), params=params, seed=3,
                      limit=params.limit)
    return mt_bench.evaluate(ctx)


# -- tests ------------------------------------------------------------------------------------------------


def test_parse_rating_follows_fastchat() -> None:
    assert parse_rating("blah Rating: [[7]]") == 7
    assert parse_rating("Rating: [[8.5]] and [3]") == 8.5
    assert parse_rating("Rating: [5]") == 5  # the single-bracket fallback
    assert parse_rating("[[ten]] no number") == -1
    assert parse_rating("[[07]]") == 7  # FastChat's literal_eval would raise here


def test_embedded_judge_prompts_match_fastchat_file() -> None:
    rows = {json.loads(line)["name"]: json.loads(line) for line in (MT_DATA / "judge_prompts.jsonl").open()}
    fallback = mt_bench.fastchat_judge_prompts()  # for a data directory without judge prompts, and the hub
    assert list(fallback) == list(mt_bench.JUDGE_PROMPT_NAMES)
    for name, prompt in fallback.items():
        assert set(prompt) == {"name", "type", "system_prompt", "prompt_template", "output_format"}
        for key, value in prompt.items():
            assert rows[name][key] == value, (name, key)
    assert rows_sha256(fallback.values()) == mt_bench.FASTCHAT_JUDGE_PROMPTS_SHA256
    data = mt_bench.load_data(None)  # the default: the embedded copy
    assert len(data.questions) == 80 and len(data.references) == 30
    assert mt_bench.prompts_version(data.judge_prompts) == mt_bench.prompts_version(fallback)
    copy = data.data_copy()
    assert (copy.copy, Path(copy.source), dict(copy.parts)) == ("embedded", MT_DATA, mt_bench.EMBEDDED_SHA256)
    for part, file in (("questions", "question.jsonl"), ("judge_prompts", "judge_prompts.jsonl"),
                       ("references", "reference_answer_gpt-4.jsonl")):  # the content hash is the sha256sum
        assert hashlib.sha256((MT_DATA / file).read_bytes()).hexdigest() == mt_bench.EMBEDDED_SHA256[part]
    assert "Apache License" in (MT_DATA / "LICENSE").read_text() and "lm-sys/FastChat" in (
        MT_DATA / "README.md").read_text()
    same = mt_bench.load_data(str(MT_DATA))  # the same files named by path: the same hashes, kind "path"
    assert same.copy == "path" and same.data_copy().sha256 == copy.sha256


def test_chat_prompts_use_the_template_or_the_plain_fallback() -> None:
    tok = build_tokenizer()
    messages = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"}]
    p = chat_prompt(tok, messages, {"turn": 2})
    want = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(p.ids) == list(want) and p.meta["messages"] == messages and not p.meta["plain_chat"]
    assert tok.decode(p.ids) == "<|bos|><|user|>q1<|eos|><|assistant|>a1<|eos|><|user|>q2<|eos|><|assistant|>"
    tok.chat_template = None
    plain = chat_prompt(tok, messages)
    assert plain_chat(messages) == "User: q1\nAssistant: a1\nUser: q2\nAssistant:"
    assert tok.decode(plain.ids, skip_special_tokens=False) == plain_chat(messages)  # no BOS: tok adds none
    assert plain.meta["plain_chat"]


def test_scores_turns_categories_reference_and_cache(tmp_path: Path, judge) -> None:
    server, url = judge
    data_dir = make_dir(tmp_path)
    engine = ScriptedEngine()
    res = run_eval(engine, path=str(data_dir), judge_base_url=url, judge_model="judge-x", max_new_tokens=64)
    m = res.metrics

    # Generation: per-category temperature (writing 0.7, others greedy), turn 2 sees the conversation.
    temps = {p.meta["question_id"]: c["temperature"] for c in engine.calls for p in c["prompts"]}
    assert temps == {81: 0.7, 101: 0.0, 111: 0.0, 131: 0.0}
    assert all(c["max_new_tokens"] == 64 and c["seed"] == 3 for c in engine.calls)
    turn2 = [p for c in engine.calls for p in c["prompts"] if p.meta["turn"] == 2 and p.meta["question_id"] == 111]
    assert [mm["role"] for mm in turn2[0].meta["messages"]] == ["user", "assistant", "user"]
    assert turn2[0].meta["messages"][1]["content"] == ANSWERS[111][0]  # the stripped turn-1 answer

    # The judge: 8 requests (4 questions x 2 turns), FastChat's settings and prompts.
    assert len(server.bodies) == 8
    assert all(b["temperature"] == 0.0 and b["max_tokens"] == 2048 and b["model"] == "judge-x" for b in server.bodies)
    by_user = {b["messages"][1]["content"]: b for b in server.bodies}
    ref = json.loads((data_dir / "reference_answer" / "gpt-4.jsonl").read_text().splitlines()[10])
    assert ref["question_id"] == 111
    math_t1 = [u for u in by_user if "[Question]\nThe vertices of a triangle" in u]
    assert len(math_t1) == 1 and "[The Start of Reference Answer]\n" + ref["choices"][0]["turns"][0] in math_t1[0]
    math_t2 = [u for u in by_user if "### Reference answer:\n" + ref["choices"][0]["turns"][1] in u]
    assert len(math_t2) == 1 and "### Assistant A:\nBRACKET" in math_t2[0]
    assert by_user[math_t1[0]]["messages"][0]["content"] == "You are a helpful assistant."
    writing = [u for u in by_user if "Reference" not in u and "travel blog" in u]
    assert len(writing) == 2  # single-v1 and single-v1-multi-turn

    # Aggregation by hand: turn 1 = 10, 10, 10, 2; turn 2 = 2, (unparsable), 5, 10.
    assert m["score_turn1"] == pytest.approx(8.0)
    assert m["score_turn2"] == pytest.approx(17 / 3)
    assert m["score"] == pytest.approx(49 / 7)
    assert m["score_writing"] == 6 and m["score_reasoning"] == 10
    assert m["score_math"] == 7.5 and m["score_extraction"] == 6
    assert m["unparsable"] == 1 and m["judged"] == 7 and m["questions"] == 4
    assert m["judge_requests"] == 8 and m["judge_cached"] == 0
    words = [len(a.split()) for qa in ANSWERS.values() for a in qa]
    assert m["answer_words"] == pytest.approx(sum(words) / 8)
    tok = build_tokenizer()  # byte-level: one token per byte
    assert m["answer_tokens"] == pytest.approx(sum(len(a.encode()) for qa in ANSWERS.values() for a in qa) / 8)
    assert len(tok.encode("nope", add_special_tokens=False)) == 4

    # Records: one per (question, turn), with the judge and prompt version.
    recs = {(r["question_id"], r["turn"]): r for r in res.records}
    assert len(recs) == 8
    r = recs[(111, 2)]
    assert r["category"] == "math" and r["answer"] == "BRACKET" and r["rating"] == 5
    assert r["judge_prompt"] == "single-math-v1-multi-turn" and r["judge"] == "openai:judge-x"
    assert r["judgment"] == "Some explanation. Rating: [5]" and r["prompt"].startswith("What's area of the circle")
    assert r["judge_prompts_version"].startswith("single-v1+single-math-v1+single-v1-multi-turn+")
    assert recs[(101, 2)]["rating"] == -1 and recs[(101, 1)]["judge_prompt"] == "single-math-v1"
    assert recs[(81, 1)]["judge_prompt"] == "single-v1" and recs[(131, 2)]["judge_prompt"] == "single-v1-multi-turn"
    assert not any(rec["cached"] for rec in res.records)

    # Second evaluation, same answers: every judgment from the cache, no new request, same scores.
    again = run_eval(ScriptedEngine(), path=str(data_dir), judge_base_url=url, judge_model="judge-x",
                     max_new_tokens=64)
    assert len(server.bodies) == 8
    assert again.metrics["judge_requests"] == 0 and again.metrics["judge_cached"] == 8
    assert again.metrics["score"] == m["score"] and all(rec["cached"] for rec in again.records)
    assert any(JudgmentCache().root.rglob("*.json"))

    # A different judge model is a different cache key; cache=False always asks.
    run_eval(ScriptedEngine(), path=str(data_dir), judge_base_url=url, judge_model="judge-y", limit=1)
    assert len(server.bodies) == 10
    run_eval(ScriptedEngine(), path=str(data_dir), judge_base_url=url, judge_model="judge-x", limit=1, cache=False)
    assert len(server.bodies) == 12

    # The copy read is the user's path (which wins over the embedded copy): 4 of the 80 questions, so its
    # questions hash differently while the judge prompts and references are FastChat's files.
    assert res.data is not None and (res.data.copy, res.data.source) == ("path", str(data_dir.resolve()))
    embedded = mt_bench.EMBEDDED_SHA256
    assert res.data.parts["judge_prompts"] == embedded["judge_prompts"]
    assert res.data.parts["references"] == embedded["references"]
    assert res.data.parts["questions"] != embedded["questions"]


def test_judge_repeats_record_the_spread(tmp_path: Path, judge) -> None:
    server, url = judge
    data_dir = make_dir(tmp_path)
    old = ANSWERS[81]
    ANSWERS[81] = ["wobbly post", "wobbly rewrite"]
    try:
        res = run_eval(ScriptedEngine(), path=str(data_dir), judge_base_url=url, judge_repeats=2, limit=1)
    finally:
        ANSWERS[81] = old
    assert sorted(b["seed"] for b in server.bodies) == [0, 0, 1, 1]
    assert res.metrics["score"] == 5 and res.metrics["judge_std"] == 1
    assert res.records[0]["ratings"] == [4, 6] and res.metrics["judge_requests"] == 4


def test_self_judge_is_the_evaluated_model_and_not_cached(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    res = run_eval(engine, path=str(make_dir(tmp_path)), judge_engine="self", limit=2)
    judged = [p for c in engine.calls for p in c["prompts"] if "question_id" not in p.meta]
    assert len(judged) == 4 and judged[0].meta["messages"][0]["role"] == "system"
    assert res.metrics["score"] == 7 and res.records[0]["judge"] == "self"
    again = run_eval(ScriptedEngine(), path=str(make_dir(tmp_path / "b")), judge_engine="self", limit=2)
    assert again.metrics["judge_requests"] == 4


def test_missing_data_is_one_line(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(HarnessError, match=r"HuggingFaceH4/mt_bench_prompts.*unset.*--set path=/dir/with/fastchat/files") as err:
        mt_bench.load_data("hf:")  # HF_HUB_OFFLINE=1 in the tests
    assert "\n" not in err.value.message
    with pytest.raises(HarnessError, match="no question.jsonl"):
        mt_bench.load_data(str(tmp_path))
    with pytest.raises(HarnessError, match="parameter 'judge_repeats' must be >= 1, got 0"):
        run_eval(ScriptedEngine(), judge_repeats=0)
    bare = make_dir(tmp_path / "bare")  # no judge_prompts.jsonl: FastChat's four from the embedded copy
    (bare / "judge_prompts.jsonl").unlink()
    data = mt_bench.load_data(str(bare))
    assert data.judge_prompts == mt_bench.fastchat_judge_prompts()
    assert data.parts["judge_prompts"] == mt_bench.FASTCHAT_JUDGE_PROMPTS_SHA256
    # A damaged embedded copy (one reference answer changed): one line naming the file that differs.
    damaged = tmp_path / "damaged"
    shutil.copytree(MT_DATA, damaged)
    refs = (damaged / "reference_answer_gpt-4.jsonl").read_text().replace("second place", "first place", 1)
    (damaged / "reference_answer_gpt-4.jsonl").write_text(refs)
    monkeypatch.setattr(mt_bench, "EMBEDDED_DIR", damaged)
    with pytest.raises(HarnessError, match=r"does not hold the shipped data \(references: sha256 \w+, expected \w+\).*reinstall") as err:
        mt_bench.load_data(None)
    assert "\n" not in err.value.message


def test_harness_eval_end_to_end_with_the_tiny_model(judge) -> None:
    server, url = judge
    """No path, HF_HUB_OFFLINE=1 (set for every test), a judge on 127.0.0.1: the embedded copy is read and recorded."""
    proc = run_harness(
        "eval", "--model", "tiny:nano", "--benchmark", "mt-bench", "--set", "benchmark.limit=2",
        "--set", f"judge_base_url={url}", "--set", "max_new_tokens=8", "--json", env={"HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = json.loads(proc.stdout)
    assert "mt-bench/score" in shown["metrics"] and "mt-bench/score_turn2" in shown["metrics"]
    assert shown["data"]["mt-bench"]["copy"] == "embedded" and shown["data"]["mt-bench"]["source"] == str(MT_DATA)
    assert shown["data"]["mt-bench"]["parts"] == mt_bench.EMBEDDED_SHA256
    assert "mt-bench: data: embedded copy (sha256 " in proc.stderr
    assert len(server.bodies) == 4  # 2 writing questions x 2 turns, one request each
    assert all(b["messages"][1]["content"].startswith(("[Instruction]", "<|The Start")) for b in server.bodies)
