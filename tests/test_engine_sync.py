"""Engines that keep their own copy of the weights (vLLM) are re-synced whenever the weights change.

vLLM needs a CUDA GPU, so the rule is exercised with a real engine of the same kind on the CPU: an
``hf`` engine over a *snapshot* (a deep copy) of the model, which, like vLLM, goes on generating from
the weights it was built with until it is synced.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from harness.cell.run import CellConfig, resolve, run_cell
from harness.core.plugins import load
from harness.core.registry import EngineSpec
from harness.engines.base import export_model
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model


class SnapshotEngine:
    """An ``hf`` engine over a copy of the model's weights at build (or sync) time."""

    own_weights = True

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.name = "snapshot"
        self.syncs = 0
        self._build(model, tokenizer, adapters_off=False)

    def _build(self, model: Any, tokenizer: Any, *, adapters_off: bool) -> None:
        self.inner = HFEngine(copy.deepcopy(export_model(model, adapters_off=adapters_off)), tokenizer)

    def sync(self, model: Any, tokenizer: Any, *, adapters_off: bool = False) -> None:
        self.syncs += 1
        self._build(model, tokenizer, adapters_off=adapters_off)

    def generate(self, prompts: Any, **kwargs: Any) -> Any:
        return self.inner.generate(prompts, **kwargs)


def _perturb(model: Any, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn(p.shape, generator=gen))


def test_lm_syncs_an_own_weights_engine_when_the_weights_change() -> None:
    loaded = load_model("tiny:nano")
    lm = LM(loaded.model, loaded.tokenizer, SnapshotEngine(loaded.model, loaded.tokenizer))
    live = HFEngine(loaded.model, loaded.tokenizer)
    prompts = [lm.encoder.prompt(t, raw=True) for t in ("abc", "hello there")]
    ids = lambda out: [c[0].ids for c in out]  # noqa: E731
    assert ids(lm.generate(prompts, max_new_tokens=8)) == ids(live.generate(prompts, max_new_tokens=8))
    assert lm.syncs == 0  # built from these very weights: nothing to sync
    before = ids(lm.generate(prompts, max_new_tokens=8))
    _perturb(loaded.model, 0)  # stands for optimizer steps: in-place writes
    after = ids(lm.generate(prompts, max_new_tokens=8))
    assert lm.syncs == 1 and after == ids(live.generate(prompts, max_new_tokens=8)) and after != before
    lm.generate(prompts, max_new_tokens=2)
    assert lm.syncs == 1  # unchanged weights: no second sync


def test_export_model_merges_lora_or_drops_it_and_leaves_the_live_model_alone() -> None:
    peft = pytest.importorskip("peft")
    loaded = load_model("tiny:nano")
    model = peft.get_peft_model(loaded.model, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    _perturb(model, 1)  # non-zero LoRA B: the adapters change the outputs
    ids = torch.tensor([[257, 10, 20, 30, 40]])
    with torch.no_grad():
        on = model(input_ids=ids).logits
        with model.disable_adapter():
            off = model(input_ids=ids).logits
        assert not torch.allclose(on, off, atol=1e-3)
        merged, base = export_model(model), export_model(model, adapters_off=True)
        assert not hasattr(merged, "peft_config") and not hasattr(base, "peft_config")
        assert torch.allclose(merged(input_ids=ids).logits, on, atol=1e-4)
        assert torch.allclose(base(input_ids=ids).logits, off, atol=1e-5)
        assert torch.allclose(model(input_ids=ids).logits, on)  # the live model still has its adapters
    assert hasattr(model, "peft_config")
    plain = load_model("tiny:nano").model
    assert export_model(plain) is plain


@pytest.mark.parametrize("lora", [False, True])
def test_on_policy_training_through_an_own_weights_engine_matches_hf(lora: bool, monkeypatch) -> None:
    """Online DPO samples each round from the current policy: through the snapshot engine the run equals
    the ``hf`` run; with syncing switched off it samples from the initial weights and ends elsewhere."""
    host = load(env={"HARNESS_LOAD_PLUGINS": "online_dpo,didactic,engines"})
    host.registry.register_callback("engine", "test")(EngineSpec(
        name="snapshot", description="hf over a snapshot of the weights (stands for vLLM)",
        factory=lambda loaded, **_: SnapshotEngine(loaded.model, loaded.tokenizer)))

    def final(engine: str) -> dict[str, float]:
        cfg = CellConfig(model="tiny:nano", method="online-dpo", benchmark="didactic-r1", engine=engine,
                         benchmark_params={"n_states": 4, "warm_steps": 5},
                         train={"rounds": 3, "steps": 3, "batch_size": 4, "lora": lora, "lr": 1e-2})
        return run_cell(resolve(cfg, host), host, progress=False, log=lambda m: None, cache=None)["final"]

    hf, snap = final("hf"), final("snapshot")
    assert snap == pytest.approx(hf, abs=1e-6)
    monkeypatch.setattr(SnapshotEngine, "sync", lambda self, *a, **k: None)  # a stale engine
    stale = final("snapshot")
    assert stale["didactic-r1/expected_reward"] != pytest.approx(hf["didactic-r1/expected_reward"], abs=1e-6)


def test_policy_and_reference_share_one_own_weights_engine() -> None:
    """SPIN samples from its reference (the previous iterate) and evaluates the policy: one snapshot
    engine per cell serves both, reloading whenever the other handle uses it, and the run equals the
    ``hf`` run (where each handle has an engine over its own live model)."""
    host = load(env={"HARNESS_LOAD_PLUGINS": "spin,didactic,engines"})
    built: list[SnapshotEngine] = []

    def factory(loaded: Any, **_: Any) -> SnapshotEngine:
        built.append(SnapshotEngine(loaded.model, loaded.tokenizer))
        return built[-1]

    host.registry.register_callback("engine", "test")(EngineSpec(
        name="snapshot", description="hf over a snapshot of the weights (stands for vLLM)", factory=factory))

    def final(engine: str) -> dict[str, float]:
        cfg = CellConfig(model="tiny:nano", method="spin", benchmark="didactic-multi-r1", engine=engine,
                         benchmark_params={"n_states": 4, "warm_steps": 5, "eval_samples": 16},
                         train={"rounds": 2, "steps": 2, "batch_size": 4, "lr": 1e-2})
        return run_cell(resolve(cfg, host), host, progress=False, log=lambda m: None, cache=None)["final"]

    hf = final("hf")
    snap = final("snapshot")
    assert len(built) == 1  # policy and reference: one engine
    # each round the reference takes it over to sample, then the policy to be evaluated
    assert built[0].syncs >= 2 * 2
    assert snap == pytest.approx(hf, abs=1e-6)


def test_two_handles_with_different_weights_share_an_engine_without_mixing_them() -> None:
    a, b = load_model("tiny:nano"), load_model("tiny:nano")
    _perturb(b.model, 3)
    shared = SnapshotEngine(a.model, a.tokenizer)
    lm_a, lm_b = LM(a.model, a.tokenizer, shared), LM(b.model, b.tokenizer, shared)
    prompts = [lm_a.encoder.prompt(t, raw=True) for t in ("abc", "hello there")]
    ids = lambda out: [c[0].ids for c in out]  # noqa: E731
    want_a = ids(HFEngine(a.model, a.tokenizer).generate(prompts, max_new_tokens=8))
    want_b = ids(HFEngine(b.model, b.tokenizer).generate(prompts, max_new_tokens=8))
    assert want_a != want_b
    for lm, want in ((lm_a, want_a), (lm_b, want_b), (lm_b, want_b), (lm_a, want_a)):
        assert ids(lm.generate(prompts, max_new_tokens=8)) == want
    assert (lm_a.syncs, lm_b.syncs, shared.syncs) == (1, 1, 2)  # built holding a; b took it, then a again
