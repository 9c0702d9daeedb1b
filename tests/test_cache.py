"""The shared cache: reference log-probs and generated samples reused across cells, only where the
model's identity is known, with results identical to a run without the cache."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial

import pytest
import torch

import harness.training.trainer as train_mod
from harness.cell.run import CellConfig, resolve, run_cell
from harness.core.cache import (
    STATS,
    Cache,
    CellCache,
    open_cache,
    prompts_digest,
    rows_digest,
    stats_snapshot,
)
from harness.core.context import RoundContext
from harness.core.data import Row, Sequence
from harness.core.plugins import load
from harness.core.registry import MethodSpec
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.training.pg import rollouts
from harness.training.samplers import self_generated
from harness.training.trainer import TrainConfig, Trainer
from tests.conftest import toy_training_data

SMALL = {"n_states": 4, "warm_steps": 5}
TRAIN = {"steps": 4, "batch_size": 4}


@pytest.fixture(scope="module")
def host():
    return load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,didactic,engines"})


def dpo_cell(host, beta: float):
    return resolve(CellConfig(model="tiny:nano", method="dpo", benchmark="didactic-r1", seed=0,
                              method_params={"beta": beta}, benchmark_params=SMALL, train=TRAIN), host)


def counting_reference(monkeypatch) -> list[int]:
    """Count the reference model's scoring calls (each a forward pass over the round's rows)."""
    calls: list[int] = []
    original = train_mod.Reference.logprobs

    def counted(self, rows, pad_id, batch_size):
        calls.append(len(rows))
        return original(self, rows, pad_id, batch_size)

    monkeypatch.setattr(train_mod.Reference, "logprobs", counted)
    return calls


def test_dpo_cells_differing_in_beta_share_reference_logprobs(host, tmp_path, monkeypatch):
    calls = counting_reference(monkeypatch)
    cache = Cache(tmp_path / "cache")
    quiet = {"progress": False, "log": lambda m: None}
    first = run_cell(dpo_cell(host, 0.05), host, cache=cache, **quiet)
    assert first["cache"]["reflogps"] == {"hits": 0, "misses": 1} and len(calls) == 1
    second = run_cell(dpo_cell(host, 0.2), host, cache=cache, **quiet)
    assert second["cache"]["reflogps"] == {"hits": 1, "misses": 0}
    assert second["warm_start"] == "hit"
    assert len(calls) == 1  # the second cell never ran its reference over the rows
    assert len(list((tmp_path / "cache" / "reflogps").glob("*.pt"))) == 1

    uncached = run_cell(dpo_cell(host, 0.2), host, cache=None, **quiet)
    assert len(calls) == 2 and uncached["warm_start"] == "off" and "reflogps" not in uncached["cache"]
    assert second["final"] == uncached["final"]  # bit for bit
    assert second["steps"] == [{**s, "step_s": second["steps"][i]["step_s"]} for i, s in enumerate(uncached["steps"])]


def test_harness_run_prints_cache_counts(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness.cli.app import cli

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "r"))
    # not --quiet: it hides the cache line (and every other status line)
    args = ["run", "--method", "dpo", "--benchmark", "didactic-r1", "--set", "train.steps=2",
            "--set", "n_states=2", "--set", "warm_steps=2"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "cache: warm start 0 hits, 1 misses; reference log-probs 0 hits, 1 misses; samples 0 hits, 0 misses" \
        in res.output
    res = CliRunner().invoke(cli, [*args, "--set", "beta=0.3"])
    assert res.exit_code == 0, res.output
    assert "cache: warm start 1 hits, 0 misses; reference log-probs 1 hits, 0 misses" in res.output


# -- the trainer's identity rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Beta:
    beta: float = 0.1


def objective(batch, params):  # a toy loss that uses the reference, as SPIN's does
    margin = (batch.logps["real"] - batch.ref_logps["real"]) - (batch.logps["generated"] - batch.ref_logps["generated"])
    return -torch.nn.functional.logsigmoid(params.beta * margin), {}


def spec(reference: str, sampler) -> MethodSpec:
    return MethodSpec(name=f"toy-{reference}", description="d", paper="-", sampler=sampler, objective=objective,
                      params=Beta, needs=frozenset({"demonstrations"}), reference=reference)


GEN = {"max_new_tokens": 3, "temperature": 1.0}


def trainer(method: MethodSpec, cache: Cache | None, beta: float = 0.1, key: str | None = "tiny-0") -> Trainer:
    m = load_model("tiny:nano", seed=0)
    policy = LM(m.model, m.tokenizer, HFEngine(m.model, m.tokenizer))
    return Trainer(method=method, method_params=Beta(beta), cfg=TrainConfig(rounds=2, steps=2, batch_size=4), policy=policy,
                   data=toy_training_data(policy.encoder), seed=0,
                   engine_factory=lambda mod: HFEngine(mod, m.tokenizer), progress=False, cache=cache, model_key=key)


def lookups(kind: str) -> tuple[int, int]:
    s = STATS[kind]
    return s["hits"], s["misses"]


def test_round_reference_is_shared_in_round_0_only(tmp_path):
    """SPIN / GSIL-like methods (reference="round", samples of the reference) share round 0 only."""
    cache = Cache(tmp_path)
    method = spec("round", partial(self_generated, source="reference", generation=GEN))
    runs = {}
    for name, beta in (("a", 0.1), ("b", 0.5)):
        t = trainer(method, cache, beta)
        before = {k: lookups(k) for k in ("samples", "reflogps")}
        t.train_round(0)
        after0 = {k: lookups(k) for k in ("samples", "reflogps")}
        t.train_round(1)  # the reference is now the previous iterate: unknown, not cached
        after1 = {k: lookups(k) for k in ("samples", "reflogps")}
        assert after1 == after0
        assert t.identity("reference") is None and t.identity("policy") is None
        runs[name] = {k: (after0[k][0] - before[k][0], after0[k][1] - before[k][1]) for k in before}
        runs[name + "_hist"] = [h.metrics["loss"] for h in t.history]
    assert runs["a"] == {"samples": (0, 1), "reflogps": (0, 1)}
    assert runs["b"] == {"samples": (1, 0), "reflogps": (1, 0)}
    # without the cache: the same losses, bit for bit
    plain = trainer(method, None, 0.5)
    plain.train_round(0)
    plain.train_round(1)
    assert [h.metrics["loss"] for h in plain.history] == runs["b_hist"]


def test_policy_samples_are_shared_before_training_only(tmp_path):
    cache = Cache(tmp_path)
    rows_of: list[list[Sequence]] = []

    def sampler(ctx):
        seqs = [o.sequence for o in rollouts(ctx, n=2, **GEN)]
        rows_of.append(seqs)
        return [Row({"real": s, "generated": s}) for s in seqs]

    method = spec("initial", sampler)
    a = trainer(method, cache)
    assert a.identity("policy") == "tiny-0" and a.identity("reference") == "tiny-0"
    h0 = lookups("samples")
    a.train_round(0)
    a.train_round(1)  # the policy has trained: its samples are not cached
    assert lookups("samples") == (h0[0], h0[1] + 1)
    assert a.identity("policy") is None and a.identity("reference") == "tiny-0"  # "initial" stays known
    b = trainer(method, cache)
    b.train_round(0)
    assert lookups("samples") == (h0[0] + 1, h0[1] + 1)
    assert rows_of[2:] == rows_of[:1]
    # no model identity (e.g. a resumed or hand-built trainer): nothing is cached
    c = trainer(method, cache, key=None)
    assert c.cache is None and c.identity("policy") is None
    c.train_round(0)
    assert lookups("samples") == (h0[0] + 1, h0[1] + 1)


def test_written_weights_lose_their_identity():
    t = trainer(spec("initial", partial(self_generated, generation=GEN)), Cache("/nonexistent"))
    assert t.identity("reference") == "tiny-0"
    with torch.no_grad():
        next(t.reference.model.parameters()).add_(0.0)  # any in-place write, even a no-op
    assert t.identity("reference") is None
    assert t.identity("policy") == "tiny-0"
    t.policy.model.load_state_dict(t.policy.model.state_dict())
    assert t.identity("policy") is None


# -- keys ----------------------------------------------------------------------------------------------------


def test_keys_cover_what_the_artifacts_depend_on(tiny_lm, tmp_path):
    enc = tiny_lm.encoder
    p1, p2 = enc.prompt("a"), enc.prompt("b")
    s = Sequence(p1, (5, 6))
    assert rows_digest([Row({"chosen": s})]) != rows_digest([Row({"rejected": s})])  # roles count
    assert rows_digest([Row({"chosen": s})]) != rows_digest([Row({"chosen": Sequence(p1, (5, 7))})])
    assert rows_digest([Row({"chosen": s}, {"reward": 1.0})]) == rows_digest([Row({"chosen": s}, {"reward": 2.0})])
    assert prompts_digest([p1, p2]) != prompts_digest([p2, p1])

    cache = CellCache(Cache(tmp_path), lambda which: "m" if which == "policy" else None)
    base = dict(n=2, seed=3, temperature=1.0, max_new_tokens=4)
    first = cache.generate("policy", tiny_lm, [p1, p2], **base)
    before = stats_snapshot()["samples"]
    again = cache.generate("policy", tiny_lm, [p1, p2], **base)
    assert again == first  # Completion equality: prompt, ids, text, finish reason
    assert STATS["samples"]["hits"] == before["hits"] + 1
    for change in ({"seed": 4}, {"n": 3}, {"temperature": 0.7}, {"max_new_tokens": 5}, {"top_p": 0.9},
                   {"stop": ["x"]}):
        misses = STATS["samples"]["misses"]
        cache.generate("policy", tiny_lm, [p1, p2], **{**base, **change})
        assert STATS["samples"]["misses"] == misses + 1, change
    misses = STATS["samples"]["misses"]
    cache.generate("reference", tiny_lm, [p1, p2], **base)  # unknown identity: neither hit nor miss
    assert STATS["samples"]["misses"] == misses


def test_cache_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", "off")
    assert open_cache() is None and open_cache("OFF") is None
    assert open_cache(tmp_path).root == tmp_path
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert open_cache().root == tmp_path


def test_ctx_without_cache_generates_directly(tiny_lm):
    ctx = RoundContext(round=0, rounds=1, seed=0, params=None, data=toy_training_data(tiny_lm.encoder),
                       policy=tiny_lm, reference=tiny_lm, rng=random.Random(0), state={})
    assert ctx.cache is None
    assert len(self_generated(ctx, generation={"max_new_tokens": 2})) == 8


def test_concurrent_misses_compute_an_entry_once(tmp_path):
    import threading
    import time

    cache = Cache(tmp_path)
    computed: list[int] = []
    started = threading.Event()

    def compute():
        started.set()
        time.sleep(0.3)  # the second worker arrives meanwhile
        computed.append(1)
        return {"x": [torch.ones(3)]}

    def fetch(out: list):
        out.append(cache.fetch("reflogps", "k", ".pt", read=lambda p: torch.load(p, weights_only=True),
                               compute=compute, write=lambda v, p: torch.save(v, p)))

    before = dict(STATS["reflogps"])
    first: list = []
    second: list = []
    t1 = threading.Thread(target=fetch, args=(first,))
    t1.start()
    started.wait(5)
    t2 = threading.Thread(target=fetch, args=(second,))
    t2.start()
    t1.join()
    t2.join()
    assert computed == [1]
    assert torch.equal(first[0]["x"][0], second[0]["x"][0])
    assert STATS["reflogps"]["hits"] == before.get("hits", 0) + 1
    assert STATS["reflogps"]["misses"] == before.get("misses", 0) + 1
