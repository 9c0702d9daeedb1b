"""Engines: the HF decoding loop on a real tiny model, the OpenAI client against a local HTTP server,
and the vLLM engine's availability check, built through the real ``engines`` plugin."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import torch

from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.engines.base import Engine
from harness.engines.factory import make_engine
from harness.engines.hf import HFEngine
from harness.engines.openai import OpenAIEngine
from harness.engines.vllm import vllm_available
from harness.models.loading import LoadedModel, load_model

TEXTS = ["hello", "The cat sat on the mat and", "abc", "1 2 3 4 5 6 7 8", "x"]


def scrambled(seed: int = 0) -> LoadedModel:
    """tiny:nano with an untied random output layer and larger weights.

    The plain random tiny model greedily repeats its last token, which would hide padding and cache
    bugs; this one produces varied, context-dependent (and still deterministic) continuations.
    """
    loaded = load_model("tiny:nano")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in loaded.model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
        vocab, hidden = loaded.model.lm_head.weight.shape
        loaded.model.lm_head.weight = torch.nn.Parameter(torch.randn(vocab, hidden, generator=gen))
    return loaded


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return scrambled()


@pytest.fixture(scope="module")
def engine(tiny: LoadedModel) -> HFEngine:
    return HFEngine(tiny.model, tiny.tokenizer, batch_size=8)


@pytest.fixture(scope="module")
def prompts(tiny: LoadedModel) -> list[Prompt]:
    return [tiny.encoder.prompt(t, raw=True) for t in TEXTS] + [tiny.encoder.prompt("hi there")]


def ids_of(out: list[list[Completion]]) -> list[list[tuple[int, ...]]]:
    return [[c.ids for c in cs] for cs in out]


# -- HFEngine -------------------------------------------------------------------------------------------


def test_hf_engine_satisfies_protocol(engine: HFEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == "hf"


def test_greedy_is_deterministic_and_sized(engine: HFEngine, prompts: list[Prompt]) -> None:
    a = engine.generate(prompts, max_new_tokens=12)
    b = engine.generate(prompts, max_new_tokens=12)
    assert ids_of(a) == ids_of(b)
    assert len(a) == len(prompts)
    for p, cs in zip(prompts, a, strict=True):
        assert len(cs) == 1 and cs[0].prompt is p
        assert len(cs[0].ids) <= 12
        if cs[0].finish_reason == "length":
            assert len(cs[0].ids) == 12
    assert len({c[0].ids for c in a}) > 1  # the scrambled model really depends on the prompt


def test_greedy_matches_transformers_generate(
    tiny: LoadedModel, engine: HFEngine, prompts: list[Prompt]
) -> None:
    prompt = prompts[1]
    ours = engine.generate([prompt], max_new_tokens=20)[0][0]
    ids = torch.tensor([prompt.ids])
    theirs = tiny.model.generate(
        ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=20, pad_token_id=256
    )
    assert list(ours.ids) == theirs[0, len(prompt.ids) :].tolist()


def test_left_padding_does_not_change_greedy_output(engine: HFEngine, prompts: list[Prompt]) -> None:
    short, long = prompts[2], prompts[3]
    assert len(long.ids) > len(short.ids)
    alone = engine.generate([short], max_new_tokens=16)[0][0]
    batched = engine.generate([long, short], max_new_tokens=16)
    assert batched[1][0].ids == alone.ids
    assert batched[0][0].ids == engine.generate([long], max_new_tokens=16)[0][0].ids
    # And batches split by batch_size (8) give the same as one big batch.
    many = [prompts[i % len(prompts)] for i in range(11)]
    assert ids_of(engine.generate(many, max_new_tokens=6)) == ids_of(
        HFEngine(engine.model, engine.tokenizer, batch_size=64).generate(many, max_new_tokens=6)
    )


def test_left_padding_with_absolute_positions(tiny: LoadedModel) -> None:
    """GPT-2 adds learned absolute position embeddings, so wrong position ids under left padding show up
    here (Llama's rotary positions are blind to a constant offset)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=262, n_positions=128, n_embd=32, n_layer=2, n_head=2, pad_token_id=256)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).eval()  # (constructed models start in train mode: dropout)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    eng = HFEngine(model, tiny.tokenizer)
    short, long = (tiny.encoder.prompt(t, raw=True) for t in ("abc", "1 2 3 4 5 6 7 8"))
    alone = eng.generate([short], max_new_tokens=12)[0][0]
    assert eng.generate([long, short], max_new_tokens=12)[1][0].ids == alone.ids
    ids = torch.tensor([short.ids])
    theirs = model.generate(
        ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, pad_token_id=256
    )
    assert list(alone.ids) == theirs[0, len(short.ids) :].tolist()


def test_max_new_tokens_zero_and_n_greedy(engine: HFEngine, prompts: list[Prompt]) -> None:
    zero = engine.generate(prompts[:2], n=2, max_new_tokens=0)
    assert [[c.ids for c in cs] for cs in zero] == [[(), ()], [(), ()]]
    greedy = engine.generate(prompts[:2], n=3, max_new_tokens=5)
    assert [len(cs) for cs in greedy] == [3, 3]
    assert all(len({c.ids for c in cs}) == 1 for cs in greedy)


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(
    engine: HFEngine, prompts: list[Prompt]
) -> None:
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    a = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=10, seed=7)
    b = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=10, seed=7)
    c = engine.generate(prompts, n=3, temperature=1.0, max_new_tokens=10, seed=8)
    nucleus = engine.generate(prompts, n=2, temperature=0.8, top_p=0.5, max_new_tokens=10, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert ids_of(a) == ids_of(b)
    assert ids_of(a) != ids_of(c)
    assert [len(cs) for cs in a] == [3] * len(prompts)
    assert all(cs[0].prompt is p for p, cs in zip(prompts, a, strict=True))
    assert any(len({x.ids for x in cs}) > 1 for cs in a)  # n samples of one prompt differ
    assert ids_of(nucleus) == ids_of(
        engine.generate(prompts, n=2, temperature=0.8, top_p=0.5, max_new_tokens=10, seed=7)
    )


def test_tiny_top_p_is_greedy(engine: HFEngine, prompts: list[Prompt]) -> None:
    nucleus = engine.generate(prompts, temperature=1.0, top_p=1e-6, max_new_tokens=10, seed=5)
    assert ids_of(nucleus) == ids_of(engine.generate(prompts, max_new_tokens=10))


def test_text_is_decoded_ids(tiny: LoadedModel, engine: HFEngine, prompts: list[Prompt]) -> None:
    for cs in engine.generate(prompts, n=2, temperature=1.0, max_new_tokens=8, seed=3):
        for c in cs:
            body = c.ids[:-1] if c.ids and c.ids[-1] == tiny.tokenizer.eos_token_id else c.ids
            assert c.text == tiny.tokenizer.decode(list(body), skip_special_tokens=True)


def _stop_for(text: str) -> str | None:
    """A two-character printable ASCII piece of ``text`` that does not start it."""
    for k in range(1, len(text) - 1):
        piece = text[k : k + 2]
        if all(32 < ord(ch) < 127 for ch in piece):
            return piece
    return None


def test_stop_strings_cut_text_and_keep_ids_to_the_completing_token(
    tiny: LoadedModel, engine: HFEngine, prompts: list[Prompt]
) -> None:
    free = engine.generate(prompts, max_new_tokens=40)
    stops = {i: _stop_for(cs[0].text) for i, cs in enumerate(free)}
    stops = {i: s for i, s in stops.items() if s}
    assert len(stops) >= 3, "the scrambled model should print some ASCII"
    decode = tiny.encoder.decode
    stopped_alone = {}
    for i, s in stops.items():
        full = free[i][0]
        c = engine.generate([prompts[i]], max_new_tokens=40, stop=[s, "\x00never\x00"])[0][0]
        assert c.finish_reason == "stop"
        assert c.text == full.text[: full.text.find(s)]
        assert s not in c.text
        assert full.ids[: len(c.ids)] == c.ids  # a prefix of the sampled ids, never re-tokenised
        assert decode(c.ids).startswith(c.text + s)  # ids run up to and including the stop string...
        assert s not in decode(c.ids[:-1])  # ...and end with the token that completed it
        stopped_alone[i] = c
    # Batched with different stop points (finished rows leave the batch): the same completions.
    for i, s in stops.items():
        batch = engine.generate(prompts, max_new_tokens=40, stop=[s])
        assert batch[i][0] == stopped_alone[i]
        for j, cs in enumerate(batch):  # rows whose text lacks the stop string run to the end unchanged
            if s not in free[j][0].text and j != i:
                assert cs[0].ids == free[j][0].ids and cs[0].finish_reason == "length"


def test_eos_is_kept_in_ids_but_not_in_text() -> None:
    loaded = scrambled()
    eng = HFEngine(loaded.model, loaded.tokenizer)
    prompt = loaded.encoder.prompt("The cat sat on the mat and", raw=True)
    free = eng.generate([prompt], max_new_tokens=30)[0][0]
    tok = free.ids[5]  # make a token the model produces an extra EOS id
    loaded.model.generation_config.eos_token_id = [loaded.tokenizer.eos_token_id, tok]
    c = eng.generate([prompt], max_new_tokens=30)[0][0]
    first = free.ids.index(tok)
    assert c.ids == free.ids[: first + 1] and c.ids[-1] == tok
    assert c.finish_reason == "stop"
    assert c.text == loaded.encoder.decode(free.ids[:first])


def test_uses_current_weights_and_restores_train_mode() -> None:
    loaded = scrambled()
    model = loaded.model
    eng = HFEngine(model, loaded.tokenizer)
    prompt = loaded.encoder.prompt("abc", raw=True)
    model.train()
    model.model.layers[0].eval()  # a deliberately mixed state must come back exactly
    before = eng.generate([prompt], max_new_tokens=8)[0][0]
    assert model.training and not model.model.layers[0].training and model.model.layers[1].training
    assert all(m.training for m in model.model.layers[1].modules())
    assert not any(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)  # "a training step"
    after = eng.generate([prompt], max_new_tokens=8)[0][0]
    assert after.ids != before.ids


def test_bad_arguments_are_one_line_errors(engine: HFEngine, prompts: list[Prompt]) -> None:
    with pytest.raises(HarnessError, match="top_p"):
        engine.generate(prompts, temperature=1.0, top_p=0.0)
    with pytest.raises(HarnessError, match="no token ids"):
        engine.generate([Prompt(ids=())])
    assert engine.generate([]) == []


# -- OpenAIEngine ---------------------------------------------------------------------------------------
# A real HTTP server on 127.0.0.1 with canned answers stands in for a remote OpenAI-compatible API
# (faking the *remote service*, not our code): it records each request and can fail on demand.


class FakeAPI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []  # status codes to answer (in order) before answering normally
        self.max_choices: int | None = None
        self.lock = threading.Lock()


def _handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with api.lock:
                api.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                fail = api.fail_next.pop(0) if api.fail_next else None
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
            elif fail is not None:
                self._send(fail, {"error": {"message": f"canned failure {fail}"}})
            else:
                question = body["messages"][-1]["content"]
                count = (
                    body.get("n", 1) if api.max_choices is None else min(body.get("n", 1), api.max_choices)
                )
                choices = [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": f"answer {i} to {question}"},
                        "finish_reason": "length" if i % 2 else "stop",
                    }
                    for i in range(count)
                ]
                self._send(200, {"object": "chat.completion", "model": body["model"], "choices": choices})

    return Handler


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeAPI, str]]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    fake = FakeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_openai_request_and_parsing(
    api: tuple[FakeAPI, str], tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base_url = api
    monkeypatch.setenv("HARNESS_TEST_OPENAI_KEY", "sk-test-123")
    eng = OpenAIEngine(
        base_url + "/", "served-model", api_key_env="HARNESS_TEST_OPENAI_KEY", tokenizer=tiny.tokenizer
    )
    assert isinstance(eng, Engine)
    prompts = [Prompt(ids=(1,), text=f"q{i}") for i in range(5)]
    out = eng.generate(
        prompts, n=3, temperature=0.7, top_p=0.9, max_new_tokens=17, stop=["\n\n", "END"], seed=11
    )
    assert [len(cs) for cs in out] == [3] * 5
    for i, cs in enumerate(out):
        assert [c.text for c in cs] == [f"answer {k} to q{i}" for k in range(3)]
        assert [c.finish_reason for c in cs] == ["stop", "length", "stop"]
        assert cs[0].prompt is prompts[i]
        assert cs[0].ids == tuple(tiny.tokenizer.encode(cs[0].text, add_special_tokens=False))
    assert len(fake.requests) == 5
    req = fake.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == "Bearer sk-test-123"
    body = req["body"]
    assert body["model"] == "served-model"
    assert body["messages"][0]["role"] == "user" and body["messages"][0]["content"].startswith("q")
    assert (body["n"], body["temperature"], body["top_p"], body["max_tokens"]) == (3, 0.7, 0.9, 17)
    assert body["stop"] == ["\n\n", "END"] and body["seed"] == 11


def test_openai_messages_no_key_and_short_n(
    api: tuple[FakeAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base_url = api
    monkeypatch.delenv("HARNESS_TEST_OPENAI_KEY", raising=False)
    fake.max_choices = 1  # a server that ignores n
    eng = OpenAIEngine(base_url, "m", api_key_env="HARNESS_TEST_OPENAI_KEY", max_workers=1)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "from meta"}]
    out = eng.generate([Prompt(ids=(), text="ignored", meta={"messages": messages})], n=2)
    assert [c.text for c in out[0]] == ["answer 0 to from meta", "answer 0 to from meta"]
    assert out[0][0].ids == ()
    assert len(fake.requests) == 2 and [r["body"]["n"] for r in fake.requests] == [2, 1]
    assert fake.requests[0]["auth"] is None
    assert fake.requests[0]["body"]["messages"] == messages
    assert "stop" not in fake.requests[0]["body"] and "seed" not in fake.requests[0]["body"]


def test_openai_retries_server_errors(api: tuple[FakeAPI, str]) -> None:
    fake, base_url = api
    fake.fail_next = [500, 429]
    eng = OpenAIEngine(base_url, "m", backoff_s=0.01)
    out = eng.generate([Prompt(ids=(), text="q")])
    assert out[0][0].text == "answer 0 to q"
    assert len(fake.requests) == 3


def test_openai_http_errors_are_one_line(api: tuple[FakeAPI, str]) -> None:
    fake, base_url = api
    fake.fail_next = [400]
    with pytest.raises(HarnessError) as err:
        OpenAIEngine(base_url, "m").generate([Prompt(ids=(), text="q")])
    message = err.value.format_message()
    assert "\n" not in message and f"{base_url}/chat/completions" in message
    assert "HTTP 400" in message and "canned failure 400" in message
    fake.fail_next = [503, 503]
    with pytest.raises(HarnessError, match="HTTP 503 after 2 tries"):
        OpenAIEngine(base_url, "m", max_retries=1, backoff_s=0.01).generate([Prompt(ids=(), text="q")])


def test_openai_unreachable_server_is_one_line() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(HarnessError) as err:
        OpenAIEngine(url, "m", timeout=5).generate([Prompt(ids=(), text="q")])
    message = err.value.format_message()
    assert "\n" not in message and f"{url}/chat/completions" in message and "cannot reach" in message


# -- the engines plugin and make_engine -----------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Registry:
    from harness.core.plugins import load

    return load(env={"HARNESS_LOAD_PLUGINS": "engines"}).registry


def test_plugin_registers_engines(registry: Registry, tiny: LoadedModel, api: tuple[FakeAPI, str]) -> None:
    assert {"hf", "openai", "vllm"} <= set(registry.specs["engine"])
    hf = make_engine(registry, "hf", tiny, batch_size=4)
    assert isinstance(hf, HFEngine) and hf.batch_size == 4 and hf.model is tiny.model
    _, base_url = api
    oa = make_engine(registry, "openai", base_url=base_url, remote_model="served")
    assert isinstance(oa, OpenAIEngine) and oa.model == "served"
    assert make_engine(registry, "openai", "served", base_url=base_url).model == "served"
    with pytest.raises(HarnessError, match="base_url"):
        make_engine(registry, "openai", tiny)
    with pytest.raises(HarnessError, match="did you mean 'hf'"):
        make_engine(registry, "hff", tiny)


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")
def test_vllm_unavailable_names_the_install_command(registry: Registry) -> None:
    assert not registry.engine("vllm").available()
    with pytest.raises(HarnessError) as err:
        make_engine(registry, "vllm", None, model_name_or_path="HuggingFaceTB/SmolLM2-135M")
    message = err.value.format_message()
    assert "engine 'vllm' is not available here" in message
    assert "pip install 'alignment-harness[vllm]'" in message
