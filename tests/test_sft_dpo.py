"""SFT and DPO losses: hand-computed values and edge cases."""

from __future__ import annotations

import math

import torch

from alignment_harness_plugins.methods.dpo import dpo_loss
from alignment_harness_plugins.methods.sft import sft_loss


def test_dpo_hand_value():
    # h_w = -1 - (-1.5) = 0.5, h_l = -2 - (-1.5) = -0.5, margin 1, beta 0.1: log(1 + e^-0.1)
    loss, m = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]),
                       beta=0.1)
    assert abs(loss.item() - math.log(1 + math.exp(-0.1))) < 1e-6
    assert abs(loss.item() - 0.6443967) < 1e-6
    assert m["reward_accuracy"].item() == 1.0 and abs(m["margin"].item() - 1.0) < 1e-6


def test_dpo_equal_logprobs_is_log2():
    x = torch.tensor([-3.0, -7.0])
    loss, m = dpo_loss(x, x, x, x, beta=0.5)
    assert torch.allclose(loss, torch.full((2,), math.log(2)))
    assert m["reward_accuracy"].item() == 0.0


def test_dpo_huge_margins_stay_finite_with_finite_gradients():
    pi_w = torch.tensor([1e9, -1e9], requires_grad=True)
    zeros = torch.zeros(2)
    loss, _ = dpo_loss(pi_w, zeros, zeros, zeros, beta=0.1)
    assert torch.isfinite(loss).all()
    assert loss[0].item() == 0.0 and abs(loss[1].item() - 1e8) / 1e8 < 1e-6
    loss.sum().backward()
    assert torch.isfinite(pi_w.grad).all()
    assert abs(pi_w.grad[1].item() + 0.1) < 1e-6  # saturated: -beta


def test_dpo_gradient_direction():
    pi_w = torch.tensor([-1.0], requires_grad=True)
    pi_l = torch.tensor([-1.0], requires_grad=True)
    loss, _ = dpo_loss(pi_w, pi_l, torch.tensor([-1.0]), torch.tensor([-1.0]), beta=1.0)
    loss.sum().backward()
    assert pi_w.grad.item() == -0.5 and pi_l.grad.item() == 0.5  # raise chosen, lower rejected


def test_sft_hand_values_and_masked_rows():
    logps = torch.tensor([-2.0, -6.0, 0.0], requires_grad=True)
    assert sft_loss(logps).tolist() == [2.0, 6.0, 0.0]
    per_token = sft_loss(logps, torch.tensor([2.0, 3.0, 0.0]))
    assert per_token.tolist() == [1.0, 2.0, 0.0]  # a fully masked row contributes 0, not NaN
    per_token.sum().backward()
    assert torch.isfinite(logps.grad).all()
