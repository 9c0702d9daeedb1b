"""KTO: the loss recomputed from the paper's equation, its reference point and gradient signs, the
unpaired prompt/completion/label format of the dataset loader (with its validation), and one tiny run
on such a file."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from alignment_harness_plugins.methods import kto
from harness.core.context import RoundContext, TrainingData
from harness.core.data import Feedback, implied_kinds
from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.models.logprobs import LogProbBatch, TokenLogProbs
from harness.models.text import raw_ids
from harness.training.datasets import dataset_params, load_kind, lookup, training_source
from tests.conftest import toy_data


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- the loss ---------------------------------------------------------------------------------------------


def test_kto_matches_eq8_for_desirable_and_undesirable_rows():
    r, z0, beta = [0.8, -0.3, 2.0, -1.5], 0.4, 0.1
    desirable = [1.0, 1.0, 0.0, 0.0]
    loss = kto.kto_loss(torch.tensor(r), torch.tensor(desirable), z0, beta=beta, desirable_weight=1.5,
                        undesirable_weight=0.7)
    want = [1.5 * (1 - sig(beta * (x - z0))) if d else 0.7 * (1 - sig(beta * (z0 - x))) for x, d in zip(r, desirable,
                                                                                                         strict=True)]
    assert loss.tolist() == pytest.approx(want)


def test_reference_point_is_the_clamped_batch_kl_on_mismatched_pairs_and_carries_no_gradient():
    logps = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    z0 = kto.reference_point(logps, torch.tensor([-1.5, -2.5, -2.5]))
    assert z0.item() == pytest.approx((0.5 + 0.5 - 0.5) / 3) and not z0.requires_grad
    assert kto.reference_point(torch.tensor([-3.0]), torch.tensor([-1.0])).item() == 0.0  # max(0, -2)


def test_kto_gradient_signs_and_saturation():
    r = torch.tensor([0.0, 0.0, 50.0], requires_grad=True)
    kto.kto_loss(r, torch.tensor([1.0, 0.0, 1.0]), 0.0, beta=1.0).sum().backward()
    assert r.grad[0].item() == pytest.approx(-0.25)  # desirable: raise its reward, beta sigma'(0)
    assert r.grad[1].item() == pytest.approx(0.25)  # undesirable: lower it
    assert abs(r.grad[2].item()) < 1e-12  # saturated far above the reference point (prospect theory)


def _batch(desirable, r, kl=None):
    tok = TokenLogProbs(torch.zeros(len(r), 1), torch.ones(len(r), 1))
    logps = {"completion": torch.tensor(r)}
    ref = {"completion": torch.zeros(len(r))}
    if kl is not None:
        logps["kl"], ref["kl"] = torch.tensor(kl), torch.zeros(len(kl))
    return LogProbBatch(logps=logps, tokens={k: tok for k in logps}, ref_logps=ref,
                        values={"desirable": torch.tensor(desirable)})


def test_objective_uses_the_kl_role_for_z0_and_zero_without_it():
    loss, m = kto.objective(_batch([1.0, 0.0], [1.0, -1.0], kl=[0.6, 0.2]), kto.KTOParams(beta=1.0))
    assert m["kl_z0"].item() == pytest.approx(0.4)
    assert loss.tolist() == pytest.approx([1 - sig(1.0 - 0.4), 1 - sig(0.4 + 1.0)])
    loss, m = kto.objective(_batch([1.0], [1.0]), kto.KTOParams(beta=1.0, kl_estimate=False))
    assert m["kl_z0"].item() == 0.0 and loss.item() == pytest.approx(1 - sig(1.0))


# -- data -------------------------------------------------------------------------------------------------


def test_pairs_unpair_into_feedback_and_the_sampler_builds_mismatched_kl_rows(tiny_lm):
    assert "feedback" in implied_kinds(frozenset({"preferences"}))
    assert "feedback" not in implied_kinds(frozenset({"demonstrations", "prompts"}))
    data = TrainingData(loader=lambda kind: toy_data(tiny_lm.encoder, kind), reward_fn=None,
                        provides=frozenset({"preferences"}))
    fb = data.feedback()
    pairs = data.preferences()
    assert len(fb) == 2 * len(pairs) and [f.desirable for f in fb[:4]] == [True, False, True, False]
    assert fb[0].completion == pairs[0].chosen and fb[1].completion == pairs[0].rejected
    ctx = RoundContext(round=0, rounds=1, seed=0, params=kto.KTOParams(), data=data, policy=tiny_lm,
                       reference=tiny_lm, rng=random.Random(0), state={})
    rows = kto.sampler(ctx)
    assert len(rows) == len(fb) and [r.values["desirable"] for r in rows[:2]] == [1.0, 0.0]
    assert rows[0].seqs["kl"].prompt == fb[0].prompt and rows[0].seqs["kl"].response == fb[1].completion
    with pytest.raises(HarnessError, match="provides no demonstrations"):
        data.demonstrations()


FEEDBACK_ROWS = [{"prompt": f"add {i} {i}", "completion": f" {2 * i}" if i % 2 == 0 else " no", "label": i % 2 == 0}
                 for i in range(8)]


@pytest.fixture(scope="module")
def host():
    return load()


def test_loader_reads_prompt_completion_label_as_feedback_only(tmp_path, host, tiny):
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in FEEDBACK_ROWS))
    bench, _ = training_source(str(path), {}, host.registry)
    assert bench.provides == {"feedback", "prompts"}  # half are bad examples: not demonstrations
    got = load_kind(lookup(str(path), host.registry), dataset_params({}, where="t"), "feedback", tiny.encoder)
    assert [f.desirable for f in got] == [True, False] * 4
    assert got[2].prompt.ids == tuple(raw_ids(tiny.tokenizer, "add 2 2"))
    assert got[2].completion == tiny.encoder.response(" 4")
    assert isinstance(got[0], Feedback)
    # CSV: every column is text; "True"/"False" (as pandas writes booleans) and 0/1 are labels
    csv = tmp_path / "kto.csv"
    csv.write_text("prompt,completion,verdict\nadd 1 1, 2,True\nadd 2 2, no,0\n")
    params = dataset_params({"columns": {"label": "verdict"}}, where="t")
    got = load_kind(lookup(str(csv), host.registry), params, "feedback", tiny.encoder)
    assert [f.desirable for f in got] == [True, False]


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "a", "completion": "b", "label": True}, {"prompt": "a", "completion": "b", "label": "maybe"}],
     r"row 2: column 'label' should be true or false"),
    ([{"prompt": "a", "completion": "b", "label": 2}], r"row 1: column 'label' should be true or false"),
    ([{"prompt": "a", "completion": "b", "label": True}, {"prompt": "a", "completion": "b"}],
     r"row 2: unpaired feedback needs 'prompt'/'completion'/'label' columns"),
])
def test_bad_feedback_rows_are_one_line_naming_the_row(tmp_path, host, rows, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(HarnessError, match=message):
        training_source(str(path), {}, host.registry)  # validated before any cell starts


def test_kto_trains_on_a_feedback_file(tmp_path, host):
    from harness.cell.run import CellConfig, resolve, run_cell

    path: Path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in FEEDBACK_ROWS))
    cfg = CellConfig(model="tiny:nano", method="kto", benchmark=str(path), train_data=True,
                     train={"steps": 8, "batch_size": 8, "lr": 3e-3, "rounds": 1}, eval_benchmarks=("didactic-r1",))
    record = run_cell(resolve(cfg, host), host, progress=False, log=lambda _m: None, cache=None)
    steps = record["steps"]
    assert record["status"] == "done" and len(steps) == 8
    # the desirable completions' implied reward rises above the undesirable ones'
    gap = lambda s: s["reward_desirable"] - s["reward_undesirable"]  # noqa: E731
    assert gap(steps[-1]) > gap(steps[0]) + 0.1
