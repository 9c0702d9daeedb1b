"""EvalContext.generate: the one way a benchmark generates. It must give exactly the engine's completions (the
same calls, in the same order, with the same seed), cut at stop strings, in chunks, with progress."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from harness.core.context import EvalContext, truncate_at_stop
from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError
from harness.engines.hf import HFEngine

TEXTS = ["add 1 2", "say hi there", "count to 3", "a", "name a color please now"]


@pytest.fixture(scope="module")
def nano() -> tuple[Any, list[Prompt]]:
    from harness.models.loading import load_model
    from harness.models.text import PromptEncoder

    tiny = load_model("tiny:nano", seed=0)
    encoder = PromptEncoder(tiny.tokenizer)
    return HFEngine(tiny.model, tiny.tokenizer), [encoder.prompt(t, raw=True) for t in TEXTS]


def _ctx(engine: Any, *, seed: int = 3, log: list | None = None, reports: list | None = None) -> EvalContext:
    return EvalContext(engine=engine, lm=None, encoder=None, params=None, seed=seed,
                       progress=(log.append if log is not None else lambda _m: None),
                       report=(lambda done, total=None, what="": reports.append((done, total)))
                       if reports is not None else (lambda *a, **k: None))


def _same(a: list[list[Completion]], b: list[list[Completion]]) -> None:
    assert [[(c.prompt.ids, c.ids, c.text, c.finish_reason) for c in cs] for cs in a] == \
        [[(c.prompt.ids, c.ids, c.text, c.finish_reason) for c in cs] for cs in b]


def test_the_engines_own_completions_greedy_and_seeded(nano) -> None:
    engine, prompts = nano
    ctx = _ctx(engine)
    _same(ctx.generate(prompts, max_new_tokens=12), engine.generate(prompts, max_new_tokens=12, seed=3))
    sampled = ctx.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=10)
    _same(sampled, engine.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=3))
    assert len({c.text for cs in sampled for c in cs}) > 5  # really sampled: the seed is what makes it equal
    other = ctx.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=4)
    assert [c.text for cs in other for c in cs] != [c.text for cs in sampled for c in cs]


def test_chunks_are_the_same_engine_calls_and_stop_strings_stop(nano) -> None:
    engine, prompts = nano
    free = engine.generate(prompts, n=2, temperature=1.0, max_new_tokens=16, seed=3)
    # A stop string that occurs in the unstopped samples: the most common character.
    stop = Counter("".join(c.text for cs in free for c in cs)).most_common(1)[0][0]
    reports: list[tuple[int, int]] = []
    log: list[str] = []
    got = _ctx(engine, reports=reports, log=log).generate(
        prompts, n=2, temperature=1.0, max_new_tokens=16, stop=(stop, ""), chunk=2, desc="bench",
        note=lambda done: f"{len(done)} so far")
    direct = [cs for start in (0, 2, 4) for cs in engine.generate(
        prompts[start:start + 2], n=2, temperature=1.0, max_new_tokens=16, stop=(stop, ""), seed=3)]
    _same(got, direct)
    assert any(c.finish_reason == "stop" for cs in got for c in cs)
    assert not any(stop in c.text for cs in got for c in cs)
    assert reports == [(0, 5), (2, 5), (4, 5), (5, 5)]  # the bar: before, then after each chunk
    assert log == ["bench: 2/5 items, 2 so far", "bench: 4/5 items, 4 so far", "bench: 5/5 items, 5 so far"]


class Recorder:
    """An engine that does not cut at stop strings (as some API servers) and records its calls."""

    name = "recorder"

    def __init__(self, text: str, per_prompt: int | None = None) -> None:
        self.text, self.per_prompt, self.calls = text, per_prompt, []

    def generate(self, prompts: list[Prompt], **kw: Any) -> list[list[Completion]]:
        self.calls.append((len(prompts), kw))
        k = self.per_prompt or kw["n"]
        return [[Completion(p, (7, 8, 9), self.text, "length")] * k for p in prompts]


def test_texts_are_cut_at_the_first_stop_string_ids_and_reason_kept() -> None:
    prompts = [Prompt((1,), "p")] * 3
    engine = Recorder("    return 1\n# note\ndef g(): pass")
    ctx = _ctx(engine, seed=11)
    out = ctx.generate(prompts, stop=["\ndef", "\n#"], max_new_tokens=5)
    assert [c.text for cs in out for c in cs] == ["    return 1"] * 3
    assert all(c.ids == (7, 8, 9) and c.finish_reason == "length" for cs in out for c in cs)
    assert engine.calls == [(3, {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 5,
                                 "stop": ("\ndef", "\n#"), "seed": 11})]
    assert truncate_at_stop("abc", ()) == "abc" and truncate_at_stop("a\nb\nc", ("\nc", "\n")) == "a"


def test_progress_counts_across_calls_of_one_evaluation() -> None:
    reports: list[tuple[int, int]] = []
    ctx = _ctx(Recorder("x"), reports=reports)
    ctx.generate([Prompt((1,))] * 2, total=5)
    ctx.generate([Prompt((1,))] * 3, total=5)
    assert reports == [(0, 5), (2, 5), (2, 5), (5, 5)]


def test_bad_calls_are_one_line() -> None:
    with pytest.raises(HarnessError, match="bench: the engine returned the wrong number of completions"):
        _ctx(Recorder("x", per_prompt=1)).generate([Prompt((1,))], n=2, temperature=1.0, desc="bench")
    with pytest.raises(HarnessError, match="bench: generating needs a generation engine"):
        _ctx(None).generate([Prompt((1,))], desc="bench")
    with pytest.raises(HarnessError, match="chunk must be at least 1"):
        _ctx(Recorder("x")).generate([Prompt((1,))], chunk=0)


def test_limit_defaults_to_the_params_limit() -> None:
    class P:
        limit = 4

    assert EvalContext(engine=None, lm=None, encoder=None, params=P(), seed=0).limit == 4
    assert EvalContext(engine=None, lm=None, encoder=None, params=P(), seed=0, limit=2).limit == 2
