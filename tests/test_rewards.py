"""The reward interface (harness.training.rewards): helpers, the Bradley-Terry RM, the judge over a local HTTP server."""

from __future__ import annotations

import json
import pickle
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from harness.core.context import RoundContext
from harness.core.data import Completion, Prompt, Sequence
from harness.engines.openai import OpenAIEngine
from harness.training import rewards
from tests.conftest import toy_data, toy_training_data


def completion(text: str, ids: tuple[int, ...] = (1,)) -> Completion:
    return Completion(Prompt(ids=(0,), text="q"), ids, text)


def test_sequence_and_token_rewards():
    assert rewards.sequence_reward(2.5) == 2.5
    assert rewards.sequence_reward([1.0, -0.5, 2.0]) == 2.5
    assert rewards.token_rewards(3.0, 3) == [0.0, 0.0, 3.0]
    assert rewards.token_rewards([1.0, 2.0], 3) == [1.0, 2.0, 0.0]
    assert rewards.token_rewards([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 2.0]
    with pytest.raises(ValueError):
        rewards.token_rewards(1.0, 0)


def test_score_all_prefers_a_batch_method():
    class Batched:
        def __init__(self):
            self.calls = 0

        def batch(self, prompts, completions):
            self.calls += 1
            return [len(c.text) for c in completions]

        def __call__(self, p, c):
            raise AssertionError("batch should be used")

    fn = Batched()
    cs = [completion("ab"), completion("abc")]
    assert rewards.score_all(fn, [c.prompt for c in cs], cs) == [2, 3] and fn.calls == 1
    assert rewards.score_all(lambda p, c: [1.0], [cs[0].prompt], cs[:1]) == [[1.0]]


def _ctx(tiny_lm, params=None) -> RoundContext:
    return RoundContext(round=0, rounds=1, seed=0, params=params, data=toy_training_data(tiny_lm.encoder),
                        policy=tiny_lm, reference=None, rng=random.Random(0), state={})


def test_current_reward_is_the_override_else_the_benchmark(tiny_lm):
    ctx = _ctx(tiny_lm)
    prompt = ctx.data.prompts()[0]
    good = Completion(prompt, (), prompt.meta["answer"])
    assert rewards.current_reward(ctx)(prompt, good) == 1.0
    ctx.state["reward"] = rewards.token_rewards  # any callable; a dense one stays a list
    assert rewards.current_reward(ctx) is rewards.token_rewards


def test_bradley_terry_loss_hand_values():
    loss, m = rewards.bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.tolist() == pytest.approx([-torch.nn.functional.logsigmoid(torch.tensor(2.0)).item(), 0.6931472])
    assert m["accuracy"].item() == 0.5
    huge, _ = rewards.bradley_terry_loss(torch.tensor([1e9]), torch.tensor([-1e9]))
    assert torch.isfinite(huge).all() and huge.item() == 0.0


def test_bradley_terry_rm_learns_the_pairs_and_leaves_the_policy_alone(tiny_lm):
    before = [p.detach().clone() for p in tiny_lm.model.parameters()]
    rm = rewards.BradleyTerryRewardModel.from_lm(tiny_lm)
    assert isinstance(rm, rewards.RewardModel)
    pairs = toy_data(tiny_lm.encoder, "preferences")
    fit = rm.fit(pairs, steps=15, lr=3e-3, batch_size=8, seed=0)
    assert fit["rm_accuracy"] == 1.0
    with torch.no_grad():
        r_w = rm.scores([Sequence(p.prompt, p.chosen) for p in pairs])
        r_l = rm.scores([Sequence(p.prompt, p.rejected) for p in pairs])
    assert bool((r_w > r_l).all())
    p0 = pairs[0]
    c = Completion(p0.prompt, p0.chosen, "")
    assert rm(p0.prompt, c) == pytest.approx(r_w[0].item(), abs=1e-5)
    for p, q in zip(before, tiny_lm.model.parameters(), strict=True):
        assert torch.equal(p, q)  # the RM is a copy
    # it survives a checkpoint (pickle) with the same scores
    again = pickle.loads(pickle.dumps(rm))
    assert again(p0.prompt, c) == pytest.approx(rm(p0.prompt, c), abs=1e-6)


class _JudgeHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that rates a response by how many times it says 'good'."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        answer = re.search(r"Answer\]\n(.*)\n\[The End", text, re.S).group(1)
        rating = min(10, answer.count("good"))
        out = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"Rating: [[{rating}]]"},
                            "finish_reason": "stop"}]}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JudgeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_judge_reward_over_a_local_openai_compatible_server(judge_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = rewards.JudgeReward(OpenAIEngine(judge_server, "judge", max_retries=0))
    cs = [completion("good good"), completion("bad"), completion("good " * 3)]
    assert judge(cs[0].prompt, cs[0]) == 2.0
    assert judge.batch([c.prompt for c in cs], cs) == [2.0, 0.0, 3.0]
    custom = rewards.JudgeReward(OpenAIEngine(judge_server, "judge"), parse=lambda t: float(t.count("[")))
    assert custom(cs[1].prompt, cs[1]) == 2.0


def test_prepare_reward_builds_the_source_once(tiny_lm, judge_server):
    params = rewards.RewardParams(reward_source="judge", judge_model="judge", judge_base_url=judge_server)
    ctx = _ctx(tiny_lm, params)
    rewards.prepare_reward(ctx)
    fn = ctx.state["reward"]
    assert isinstance(fn, rewards.JudgeReward)
    again = pickle.loads(pickle.dumps(fn))  # pickles as its settings and rebuilds its engine
    c = completion("good")
    assert again(c.prompt, c) == fn(c.prompt, c) == 1.0
    rewards.prepare_reward(ctx)
    assert ctx.state["reward"] is fn
    bt = _ctx(tiny_lm, rewards.RewardParams(reward_source="bt", rm_steps=2))
    rewards.prepare_reward(bt)
    assert isinstance(bt.state["reward"], rewards.BradleyTerryRewardModel) and "rm_loss" in bt.state["reward_fit"]
    plain = _ctx(tiny_lm, rewards.RewardParams())
    rewards.prepare_reward(plain)
    assert plain.state.get("reward") is None
