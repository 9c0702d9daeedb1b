"""Policy-gradient primitives (harness.training.pg) on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from harness.training import pg


def test_whiten_masked_mean_zero_std_one():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    w = pg.whiten(x, mask)
    vals = w[mask.bool()]
    assert vals.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert vals.pow(2).mean().item() == pytest.approx(1.0, abs=1e-5)  # population std
    assert w[1, 1] == 0 and w[1, 2] == 0
    # mean 2.5, population std sqrt(1.25): (1 - 2.5) / 1.118
    assert w[0, 0].item() == pytest.approx(-1.5 / math.sqrt(1.25), rel=1e-5)
    kept = pg.whiten(x, mask, shift_mean=False)
    assert kept[0, 0].item() == pytest.approx(-1.5 / math.sqrt(1.25) + 2.5, rel=1e-5)


def test_running_moments_match_all_values_seen():
    m = pg.RunningMoments()
    assert m.std == 1.0
    m.update([1.0, 2.0])
    m.update([3.0, 4.0, 10.0])
    xs = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    assert m.count == 5
    assert m.mean == pytest.approx(xs.mean().item())
    assert m.std == pytest.approx(xs.std().item())  # ddof 1
    m.update([])
    assert m.count == 5


def test_leave_one_out_baseline_excludes_the_sample_itself():
    r = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    b = pg.leave_one_out_baseline(r)
    assert b.tolist() == [[4.0, 3.5, 1.5], [1.5, 1.5, 0.0]]
    # RLOO advantages r_i - b_i sum to n/(n-1) * sum(r - mean) = 0 within a group
    assert (r - b).sum(-1).abs().max().item() < 1e-6
    with pytest.raises(ValueError):
        pg.leave_one_out_baseline(torch.tensor([[1.0]]))


def test_discounted_returns_with_mask():
    r = torch.tensor([[1.0, 0.0, 2.0], [5.0, 7.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    g = pg.discounted_returns(r, mask, gamma=0.5)
    assert g.tolist() == [[1.5, 1.0, 2.0], [8.5, 7.0, 0.0]]


def test_gae_three_step_hand_example():
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = pg.gae(r, v, gamma=1.0, lam=0.95)
    # delta = [0.1, 0.1, 0.3]; A2 = 0.3, A1 = 0.1 + 0.95*0.3, A0 = 0.1 + 0.95*A1
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3])
    assert ret[0].tolist() == pytest.approx([0.96575, 0.985, 1.0])
    # lam = 1: advantages are reward-to-go minus value (Monte Carlo)
    adv1, _ = pg.gae(r, v, gamma=1.0, lam=1.0)
    assert adv1[0].tolist() == pytest.approx([0.5, 0.4, 0.3])


def test_gae_padding_ends_the_episode():
    r = torch.tensor([[0.0, 1.0, 0.0]])
    v = torch.tensor([[0.2, 0.4, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = pg.gae(r, v, mask, gamma=1.0, lam=0.5)
    # V after the last real token is 0: delta1 = 1 - 0.4 = 0.6, delta0 = 0.4 - 0.2 = 0.2
    assert adv[0].tolist() == pytest.approx([0.2 + 0.5 * 0.6, 0.6, 0.0])
    assert ret[0, 2] == 0


def test_kl_estimators_hand_values():
    logp = torch.log(torch.tensor([0.5]))
    ref = torch.log(torch.tensor([0.25]))  # log r = log(ref/pi) = log 0.5
    assert pg.kl_k1(logp, ref).item() == pytest.approx(math.log(2))
    assert pg.kl_k2(logp, ref).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert pg.kl_k3(logp, ref).item() == pytest.approx(-0.5 + math.log(2))
    # all three are unbiased/biased estimators of the same KL: exact expectation check for k1 and k3
    pi = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.4, 0.4, 0.2])
    exact = (pi * (pi / q).log()).sum()
    for name in ("k1", "k3"):
        est = (pi * pg.KL_ESTIMATORS[name](pi.log(), q.log())).sum()
        assert est.item() == pytest.approx(exact.item(), rel=1e-5)


def test_clipped_surrogate_gradient_is_zero_outside_the_trust_region():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    # ratios 1.5 (A>0: clipped), 1.1 (A>0: inside), 0.5 (A<0: clipped), 0.5 (A>0: unclipped pessimistic)
    logp = (old + torch.log(torch.tensor([1.5, 1.1, 0.5, 0.5]))).clone().requires_grad_(True)
    adv = torch.tensor([1.0, 1.0, -1.0, 1.0])
    loss, clipped = pg.clipped_surrogate(logp, old, adv, clip=0.2)
    assert loss.tolist() == pytest.approx([-1.2, -1.1, 0.8, -0.5])
    assert clipped.tolist() == [1.0, 0.0, 1.0, 0.0]
    loss.sum().backward()
    assert logp.grad[0].item() == 0.0  # exactly 0
    assert logp.grad[2].item() == 0.0
    assert logp.grad[1].item() == pytest.approx(-1.1)  # d(-A e^logp)/dlogp = -A ratio
    assert logp.grad[3].item() == pytest.approx(-0.5)


def test_clipped_value_loss():
    v = torch.tensor([1.0, 0.0], requires_grad=True)
    old = torch.tensor([0.0, 0.0])
    ret = torch.tensor([2.0, 1.0])
    loss = pg.clipped_value_loss(v, old, ret, clip=0.2)
    # row 0: max((1-2)^2, (0.2-2)^2) / 2 = 1.62 (clipped branch, no gradient)
    assert loss.tolist() == pytest.approx([1.62, 0.5])
    loss.sum().backward()
    assert v.grad.tolist() == pytest.approx([0.0, -1.0])


def test_adaptive_kl_moves_the_coefficient_the_right_way():
    ctl = pg.AdaptiveKLController(value=0.2, target=6.0, horizon=100)
    assert ctl.update(12.0, n_steps=10) == pytest.approx(0.2 * 1.02)  # error clipped at +0.2
    up = ctl.value
    assert ctl.update(3.0, n_steps=10) == pytest.approx(up * (1 - 0.2 * 0.1))  # KL too low: down
    assert ctl.update(6.0, n_steps=10) == pytest.approx(up * 0.98)  # on target: unchanged
    fixed = pg.AdaptiveKLController(value=0.1, target=None)
    assert fixed.update(100.0, 1000) == 0.1


def test_entropy_from_logits():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1e9, 0.0, 0.0, 0.0]])
    h = pg.entropy_from_logits(logits)
    assert h[0].item() == pytest.approx(math.log(4))
    assert h[1].item() == pytest.approx(0.0, abs=1e-6)


def test_reinforce_loss_and_token_values_roundtrip():
    logps = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    rows = [pg.token_values("adv", [0.5, 2.0], 2), pg.token_values("adv", [-1.0], 2)]
    assert rows[1] == {"adv@0": -1.0, "adv@1": 0.0}
    values = {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}
    adv = pg.stack_token_values(values, "adv", 2)
    assert adv.tolist() == [[0.5, 2.0], [-1.0, 0.0]]
    loss = pg.reinforce_loss(logps, adv, mask)
    assert loss.tolist() == pytest.approx([0.5 + 4.0, -3.0])
    loss.sum().backward()
    assert logps.grad.tolist() == [[-0.5, -2.0], [1.0, 0.0]]
    with pytest.raises(ValueError):
        pg.token_values("x", [1.0, 2.0, 3.0], 2)
