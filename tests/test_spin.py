"""SPIN: equal to DPO on the same (demonstration, self-generated) pairs; the previous iterate as reference."""

from __future__ import annotations

import math

import pytest
import torch

from alignment_harness_plugins.methods import dpo, spin
from alignment_harness_plugins.methods.dpo import dpo_loss
from alignment_harness_plugins.methods.spin import SPINParams, spin_loss
from harness.models.logprobs import LogProbBatch, TokenLogProbs
from harness.training.trainer import TrainConfig
from tests.test_gsil import host, make_trainer, record_rows  # noqa: F401 - fixtures


def test_spin_loss_equals_dpo_loss_on_the_same_pairs():
    g = torch.Generator().manual_seed(1)
    pi_r, pi_g, ref_r, ref_g = (torch.randn(8, generator=g) * 3 for _ in range(4))
    for beta in (0.1, 1.0):
        ours, m = spin_loss(pi_r, pi_g, ref_r, ref_g, beta=beta)
        theirs, m_dpo = dpo_loss(pi_r, pi_g, ref_r, ref_g, beta=beta)
        assert torch.equal(ours, theirs)
        assert m.keys() == m_dpo.keys()


def test_spin_hand_value_and_default_beta():
    # h_real = 0.5, h_gen = -0.5: -log sigmoid(0.1 * 1) = log(1 + e^-0.1)
    t = torch.tensor
    loss, _ = spin_loss(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), beta=SPINParams().beta)
    assert SPINParams().beta == 0.1
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.1)), rel=1e-6)


def _batch(roles: tuple[str, str], logps: list[torch.Tensor]) -> LogProbBatch:
    pairs = zip(roles, logps[:2], strict=True)
    tok = {r: TokenLogProbs(lp[:, None], torch.ones(len(lp), 1)) for r, lp in pairs}
    return LogProbBatch(logps=dict(zip(roles, logps[:2], strict=True)), tokens=tok,
                        ref_logps=dict(zip(roles, logps[2:], strict=True)))


def test_spin_objective_equals_dpo_objective_with_chosen_real_rejected_generated():
    g = torch.Generator().manual_seed(2)
    logps = [torch.randn(5, generator=g) for _ in range(4)]
    ours, _ = spin.objective(_batch(("real", "generated"), logps), SPINParams(beta=0.2))
    theirs, _ = dpo.objective(_batch(("chosen", "rejected"), logps), dpo.DPOParams(beta=0.2))
    assert torch.equal(ours, theirs)


def test_spin_spec_uses_the_previous_iterate_as_reference(host):  # noqa: F811
    spec = host.registry.method("spin")
    assert spec.reference == "round" and spec.needs == frozenset({"demonstrations"})


def test_spin_run_separates_demonstrations_from_self_generated_samples(host):  # noqa: F811
    t = make_trainer(host, "spin", TrainConfig(rounds=2, steps=10, batch_size=16, lr=3e-3))
    seen = record_rows(t)
    records = [rec for r in range(2) for rec in t.train_round(r)]
    assert len(seen) == 2 and all(len(r.seqs["generated"].response) == 1 for r in seen[1])
    last = records[-5:]  # round 2: the previous iterate's greedy answer may itself be a demonstrated action
    assert sum(r.metrics["margin"] for r in last) > 0
    assert sum(r.metrics["reward_accuracy"] for r in last) / len(last) > 0.5
    first = records[9]  # end of round 1
    assert first.metrics["reward_accuracy"] > 0.9 and first.metrics["margin"] > 0


def test_spin_history_trains_iteration_t_on_t_minus_1_and_t(host):  # noqa: F811
    """The released configs' rule: round t's training set is round t's pairs plus round t-1's (not t-2's)."""
    t = make_trainer(host, "spin", TrainConfig(rounds=3, steps=1, batch_size=4, lr=3e-3), history=1, limit=4)
    seen = record_rows(t)
    for r in range(3):
        t.train_round(r)
    own = [rows[:4] for rows in seen]
    assert [len(rows) for rows in seen] == [4, 8, 8]
    assert seen[1][4:] == own[0] and seen[2][4:] == own[1]
