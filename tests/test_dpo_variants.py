"""The DPO-variant losses, each recomputed from its paper's equation written out here with ``math`` on
hand-chosen numbers (not through the plugin's helpers), plus the special cases and gradient signs the
papers state. Pure tensor math: no model."""

from __future__ import annotations

import math

import pytest
import torch

from alignment_harness_plugins.methods import (
    apo,
    bco,
    cpo,
    discopop,
    dpop,
    exo,
    label_noise_dpo,
    nca,
    orpo,
    rdpo,
    simpo,
    slic_hf,
    sppo,
    wpo,
)
from alignment_harness_plugins.methods.dpo import dpo_loss
from harness.core.errors import HarnessError
from harness.core.params import apply_overrides
from harness.models.logprobs import LogProbBatch, TokenLogProbs


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def T(*xs: float, grad: bool = False) -> torch.Tensor:  # noqa: N802
    return torch.tensor(list(xs), dtype=torch.float64, requires_grad=grad)


# pair 0: h_w = 0.5, h_l = -0.5; pair 1: h_w = -2, h_l = 1 (ranked wrong); policy/reference log-probs:
PI_W, PI_L, REF_W, REF_L = (-1.0, -6.0), (-2.0, -3.0), (-1.5, -4.0), (-1.5, -4.0)
H_W = [p - r for p, r in zip(PI_W, REF_W, strict=True)]
H_L = [p - r for p, r in zip(PI_L, REF_L, strict=True)]


def dpo_paper(h_w: float, h_l: float, beta: float) -> float:
    return -logsig(beta * (h_w - h_l))


def grads(fn, h_w: float, h_l: float):
    w, l_ = T(h_w, grad=True), T(h_l, grad=True)
    fn(w, l_).sum().backward()
    return w.grad.item(), l_.grad.item()


# -- SimPO ------------------------------------------------------------------------------------------------


def test_simpo_matches_eq6_and_is_reference_free():
    lw, ll = (2.0, 4.0), (3.0, 1.0)
    loss = simpo.simpo_loss(T(*PI_W), T(*lw), T(*PI_L), T(*ll), beta=2.0, gamma=1.0)
    want = [-logsig(2.0 * pw / a - 2.0 * pl / b - 1.0) for pw, a, pl, b in zip(PI_W, lw, PI_L, ll, strict=True)]
    assert loss.tolist() == pytest.approx(want)
    assert simpo.SimPOParams().beta == 2.0 and simpo.SimPOParams().gamma == 1.0


def test_simpo_gradient_raises_chosen_lowers_rejected():
    gw, gl = grads(lambda w, l_: simpo.simpo_loss(w, T(2.0), l_, T(2.0), beta=2.0, gamma=0.5), -3.0, -3.0)
    assert gw < 0 < gl


# -- CPO --------------------------------------------------------------------------------------------------


def test_cpo_is_reference_free_dpo_plus_nll():
    loss = cpo.cpo_loss(T(*PI_W), T(*PI_L), -T(*PI_W), beta=0.1, alpha=1.0)
    want = [-logsig(0.1 * (pw - pl)) - pw for pw, pl in zip(PI_W, PI_L, strict=True)]
    assert loss.tolist() == pytest.approx(want)
    # alpha = 0: DPO with a uniform reference (ref log-probs equal for both responses)
    zero = torch.zeros(2, dtype=torch.float64)
    d, _ = dpo_loss(T(*PI_W), T(*PI_L), zero, zero, beta=0.1)
    assert cpo.cpo_loss(T(*PI_W), T(*PI_L), -T(*PI_W), beta=0.1, alpha=0.0).tolist() == pytest.approx(d.tolist())


# -- ORPO -------------------------------------------------------------------------------------------------


def test_orpo_matches_eq6_with_length_normalised_odds():
    mw, ml = -0.4, -1.2  # mean token log-probs
    pw, pl = math.exp(mw), math.exp(ml)
    l_or = -logsig(math.log(pw / (1 - pw)) - math.log(pl / (1 - pl)))
    loss, ratio = orpo.orpo_loss(T(mw), T(ml), lam=0.1)
    assert loss.item() == pytest.approx(-mw + 0.1 * l_or)
    assert ratio.item() == pytest.approx(math.log(pw / (1 - pw) * (1 - pl) / pl))


def test_orpo_gradient_sign_and_finite_near_certainty():
    gw, gl = grads(lambda w, l_: orpo.orpo_loss(w, l_, lam=0.1)[0], -0.5, -0.5)
    assert gw < 0 < gl  # SFT + odds ratio raise the chosen; the odds ratio lowers the rejected
    w = T(0.0, grad=True)  # P(y_w) = 1: log(1 - P) would be -inf
    loss, _ = orpo.orpo_loss(w, T(-1.0), lam=0.1)
    loss.backward()
    assert math.isfinite(loss.item()) and math.isfinite(w.grad.item())


# -- R-DPO ------------------------------------------------------------------------------------------------


def test_rdpo_matches_paper_and_alpha_zero_is_dpo():
    lw, ll = (5.0, 2.0), (2.0, 2.0)
    loss = rdpo.rdpo_loss(T(*H_W), T(*H_L), T(*lw), T(*ll), beta=0.1, alpha=0.05)
    want = [-logsig(0.1 * a - 0.1 * b + 0.05 * (c - d)) for a, b, c, d in zip(H_W, H_L, lw, ll, strict=True)]
    assert loss.tolist() == pytest.approx(want)
    zero = rdpo.rdpo_loss(T(*H_W), T(*H_L), T(*lw), T(*ll), beta=0.1, alpha=0.0)
    assert zero.tolist() == pytest.approx([dpo_paper(a, b, 0.1) for a, b in zip(H_W, H_L, strict=True)])


def test_rdpo_pushes_less_on_a_longer_chosen_response():
    # the regulariser credits length up front, so the gradient on a long chosen response is smaller
    g_long, _ = grads(lambda w, l_: rdpo.rdpo_loss(w, l_, T(20.0), T(2.0), beta=0.1, alpha=0.05), 0.0, 0.0)
    g_same, _ = grads(lambda w, l_: rdpo.rdpo_loss(w, l_, T(2.0), T(2.0), beta=0.1, alpha=0.05), 0.0, 0.0)
    assert g_same < g_long < 0


# -- DPOP -------------------------------------------------------------------------------------------------


def test_dpop_matches_eq3_and_equals_dpo_above_the_reference():
    loss = dpop.dpop_loss(T(*H_W), T(*H_L), beta=0.1, lam=50.0)
    want = [-logsig(0.1 * (a - b - 50.0 * max(0.0, -a))) for a, b in zip(H_W, H_L, strict=True)]
    assert loss.tolist() == pytest.approx(want)
    assert loss[0].item() == pytest.approx(dpo_paper(H_W[0], H_L[0], 0.1))  # h_w > 0: no penalty
    assert loss[1].item() > dpo_paper(H_W[1], H_L[1], 0.1)


def test_dpop_gradient_on_chosen_below_reference_is_1_plus_lam_times_dpos():
    g, _ = grads(lambda w, l_: dpop.dpop_loss(w, l_, beta=0.1, lam=50.0), -1.0, -1.0)
    # at h_w = h_l = -1 the DPO-P logit is beta(0 - 50): dL/dh_w = -beta (1 + lam) sigmoid(-logit)
    assert g == pytest.approx(-0.1 * 51 * (1 - sig(0.1 * -50.0)))


# -- cDPO / robust DPO ------------------------------------------------------------------------------------


def test_cdpo_and_robust_dpo_match_their_equations_and_eps_zero_is_dpo():
    eps, beta = 0.2, 0.1
    c = label_noise_dpo.cdpo_loss(T(*H_W), T(*H_L), beta=beta, eps=eps)
    r = label_noise_dpo.robust_dpo_loss(T(*H_W), T(*H_L), beta=beta, eps=eps)
    for i, (a, b) in enumerate(zip(H_W, H_L, strict=True)):
        z = beta * (a - b)
        assert c[i].item() == pytest.approx(-(1 - eps) * logsig(z) - eps * logsig(-z))
        assert r[i].item() == pytest.approx(((1 - eps) * -logsig(z) - eps * -logsig(-z)) / (1 - 2 * eps))
    dpo = [dpo_paper(a, b, beta) for a, b in zip(H_W, H_L, strict=True)]
    assert label_noise_dpo.cdpo_loss(T(*H_W), T(*H_L), beta=beta, eps=0.0).tolist() == pytest.approx(dpo)
    assert label_noise_dpo.robust_dpo_loss(T(*H_W), T(*H_L), beta=beta, eps=0.0).tolist() == pytest.approx(dpo)


def test_robust_dpo_is_unbiased_under_label_flips():
    # rDPO's theorem: averaging over a flip with probability eps recovers the clean DPO loss
    eps, beta, m = 0.3, 0.5, 1.7
    f = lambda x: label_noise_dpo.robust_dpo_loss(T(x), T(0.0), beta=beta, eps=eps).item()  # noqa: E731
    assert (1 - eps) * f(m) + eps * f(-m) == pytest.approx(dpo_paper(m, 0.0, beta))


def test_cdpo_gradient_vanishes_at_the_soft_target():
    eps, beta = 0.1, 0.5
    m_star = math.log((1 - eps) / eps) / beta  # sigmoid(beta m*) = 1 - eps
    g, _ = grads(lambda w, l_: label_noise_dpo.cdpo_loss(w, l_, beta=beta, eps=eps), m_star, 0.0)
    assert abs(g) < 1e-9
    g_below, _ = grads(lambda w, l_: label_noise_dpo.cdpo_loss(w, l_, beta=beta, eps=eps), m_star - 1, 0.0)
    g_above, _ = grads(lambda w, l_: label_noise_dpo.cdpo_loss(w, l_, beta=beta, eps=eps), m_star + 1, 0.0)
    assert g_below < 0 < g_above  # pulled back to the target from both sides (DPO's would stay < 0)


def test_label_noise_rejects_eps_of_a_half_where_it_is_set():
    with pytest.raises(HarnessError, match=r"^method robust-dpo: parameter 'eps' must be in \[0, 0.5\), got 0.5$"):
        apply_overrides(label_noise_dpo.LabelNoiseParams, {"eps": "0.5"}, where="method robust-dpo", from_string=True)


# -- SLiC-HF ----------------------------------------------------------------------------------------------


def test_slic_matches_eq2_and_hinge_switches_off_past_the_margin():
    loss = slic_hf.slic_loss(T(*PI_W), T(*PI_L), delta=1.0, lam=0.5)
    want = [max(0.0, 1.0 - pw + pl) - 0.5 * pw for pw, pl in zip(PI_W, PI_L, strict=True)]
    assert loss.tolist() == pytest.approx(want)
    gw, gl = grads(lambda w, l_: slic_hf.slic_loss(w, l_, delta=1.0, lam=0.5), -1.0, -3.0)  # margin 2 > delta
    assert gw == pytest.approx(-0.5) and gl == 0.0  # only the regulariser acts
    gw, gl = grads(lambda w, l_: slic_hf.slic_loss(w, l_, delta=1.0, lam=0.5), -1.0, -1.5)  # margin 0.5 < delta
    assert gw == pytest.approx(-1.5) and gl == pytest.approx(1.0)


# -- NCA --------------------------------------------------------------------------------------------------


def test_nca_matches_the_paper_and_holds_the_chosen_reward_at_log2():
    loss = nca.nca_loss(T(*H_W), T(*H_L), beta=0.1)
    want = [-logsig(0.1 * a) - 0.5 * logsig(-0.1 * a) - 0.5 * logsig(-0.1 * b) for a, b in zip(H_W, H_L, strict=True)]
    assert loss.tolist() == pytest.approx(want)
    gw, _ = grads(lambda w, l_: nca.nca_loss(w, l_, beta=1.0), math.log(2.0), 0.0)
    assert abs(gw) < 1e-9  # the chosen term's fixed point: sigmoid(r_w) = 2/3
    for hw, hl in ((-3.0, 5.0), (4.0, -4.0)):
        _, gl = grads(lambda w, l_: nca.nca_loss(w, l_, beta=1.0), hw, hl)
        assert gl > 0  # the rejected response is always pushed down


def test_nca_is_not_shift_invariant_unlike_dpo():
    a = nca.nca_loss(T(1.0), T(0.0), beta=1.0).item()
    b = nca.nca_loss(T(-4.0), T(-5.0), beta=1.0).item()
    assert a != pytest.approx(b)  # DPO gives the same loss to both (same margin)


# -- APO --------------------------------------------------------------------------------------------------


def test_apo_zero_and_down_match_eq7_eq8():
    z = apo.apo_zero_loss(T(*H_W), T(*H_L), beta=0.1)
    d = apo.apo_down_loss(T(*H_W), T(*H_L), beta=0.1)
    for i, (a, b) in enumerate(zip(H_W, H_L, strict=True)):
        assert z[i].item() == pytest.approx(1 - sig(0.1 * a) + sig(0.1 * b))
        assert d[i].item() == pytest.approx(sig(0.1 * a) + 1 - sig(0.1 * (a - b)))


def test_apo_gradient_signs_at_the_anchor():
    gw, gl = grads(lambda w, l_: apo.apo_zero_loss(w, l_, beta=1.0), 0.0, 0.0)
    assert gw == pytest.approx(-0.25) and gl == pytest.approx(0.25)  # chosen up, rejected down
    gw, gl = grads(lambda w, l_: apo.apo_down_loss(w, l_, beta=1.0), 0.0, 0.0)
    assert gw == pytest.approx(0.0) and gl == pytest.approx(0.25)
    gw, _ = grads(lambda w, l_: apo.apo_down_loss(w, l_, beta=1.0), 0.0, -3.0)
    assert gw > 0  # once the rejected is below, apo-down lowers the chosen too


# -- EXO --------------------------------------------------------------------------------------------------


def test_exo_is_the_reverse_kl_to_the_soft_labels():
    eps, beta = 1e-3, 0.1
    loss = exo.exo_loss(T(*H_W), T(*H_L), beta=beta, eps=eps)
    for i, (a, b) in enumerate(zip(H_W, H_L, strict=True)):
        p = sig(beta * (a - b))
        assert loss[i].item() == pytest.approx(p * math.log(p / (1 - eps)) + (1 - p) * math.log((1 - p) / eps))
    m_star = math.log((1 - eps) / eps) / beta
    assert exo.exo_loss(T(m_star), T(0.0), beta=beta, eps=eps).item() == pytest.approx(0.0, abs=1e-12)
    g_below, _ = grads(lambda w, l_: exo.exo_loss(w, l_, beta=beta, eps=eps), m_star - 5, 0.0)
    g_above, _ = grads(lambda w, l_: exo.exo_loss(w, l_, beta=beta, eps=eps), m_star + 5, 0.0)
    assert g_below < 0 < g_above


# -- BCO --------------------------------------------------------------------------------------------------


def test_bco_matches_the_classifier_loss_with_fixed_and_batch_mean_shift():
    beta = 0.1
    loss, d = bco.bco_loss(T(*H_W), T(*H_L), beta=beta, delta=0.02)
    want = [-logsig(beta * a - 0.02) - logsig(-(beta * b - 0.02)) for a, b in zip(H_W, H_L, strict=True)]
    assert loss.tolist() == pytest.approx(want) and d.item() == pytest.approx(0.02)
    loss, d = bco.bco_loss(T(*H_W), T(*H_L), beta=beta)
    mean = beta * (sum(H_W) + sum(H_L)) / 4
    assert d.item() == pytest.approx(mean)
    assert loss.tolist() == pytest.approx([-logsig(beta * a - mean) - logsig(mean - beta * b)
                                           for a, b in zip(H_W, H_L, strict=True)])
    gw, gl = grads(lambda w, l_: bco.bco_loss(w, l_, beta=beta, delta=0.0)[0], 3.0, -3.0)
    assert gw < 0 < gl


# -- SPPO -------------------------------------------------------------------------------------------------


def test_sppo_hard_label_square_loss_and_its_fixed_point():
    loss = sppo.sppo_loss(T(*H_W), T(*H_L), eta=10.0)
    assert loss.tolist() == pytest.approx([(a - 5.0) ** 2 + (b + 5.0) ** 2 for a, b in zip(H_W, H_L, strict=True)])
    gw, gl = grads(lambda w, l_: sppo.sppo_loss(w, l_, eta=10.0), 5.0, -5.0)
    assert gw == 0.0 and gl == 0.0
    gw, _ = grads(lambda w, l_: sppo.sppo_loss(w, l_, eta=10.0), 7.0, 3.0)
    assert gw > 0  # unlike DPO, an over-likely chosen response is pulled back to eta/2


# -- WPO --------------------------------------------------------------------------------------------------


def test_wpo_weight_from_token_probabilities():
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(2.0), 0.0]]])  # p = (1/4, 3/4), (2/3, 1/3)
    token_logps = torch.tensor([[math.log(0.75), math.log(2 / 3)]])
    mask = torch.ones(1, 2)
    lw = wpo.wpo_log_weight(token_logps, logits, mask)
    want = 0.5 * (math.log(0.75 / (1 / 16 + 9 / 16)) + math.log((2 / 3) / (4 / 9 + 1 / 9)))
    assert lw.item() == pytest.approx(want)
    dpo = T(0.7, 0.7)
    loss, weight = wpo.wpo_loss(dpo, T(-0.5, 0.4), T(-0.2, 0.3))
    assert weight.tolist() == pytest.approx([math.exp(-0.7), 1.0])  # clamped at 1
    assert loss.tolist() == pytest.approx([0.7 * math.exp(-0.7), 0.7])


def test_wpo_objective_on_a_batch_is_weighted_dpo():
    logits = torch.zeros(1, 1, 4)  # uniform over 4: weight of each response exp(log 1/4 - log 1/4) = 1
    tok = TokenLogProbs(torch.tensor([[math.log(0.25)]]), torch.ones(1, 1), None, logits)
    b = LogProbBatch(logps={"chosen": torch.tensor([-1.0]), "rejected": torch.tensor([-2.0])},
                     tokens={"chosen": tok, "rejected": tok},
                     ref_logps={"chosen": torch.tensor([-1.5]), "rejected": torch.tensor([-1.5])})
    loss, m = wpo.objective(b, wpo.WPOParams(beta=0.1))
    assert loss.item() == pytest.approx(dpo_paper(0.5, -0.5, 0.1), rel=1e-6) and m["weight"].item() == 1.0


# -- DiscoPOP ---------------------------------------------------------------------------------------------


def test_discopop_matches_eq5_and_is_dpo_for_negative_margins_as_tau_shrinks():
    loss = discopop.discopop_loss(T(*H_W), T(*H_L), beta=0.05, tau=0.05)
    for i, (a, b) in enumerate(zip(H_W, H_L, strict=True)):
        z = 0.05 * (a - b)
        mix = sig(z / 0.05)
        assert loss[i].item() == pytest.approx((1 - mix) * -logsig(z) + mix * math.exp(-z))
    tiny = discopop.discopop_loss(T(-3.0), T(0.0), beta=1.0, tau=1e-3)
    assert tiny.item() == pytest.approx(dpo_paper(-3.0, 0.0, 1.0))


def test_discopop_gradient_at_the_reference_pushes_the_margin_negative():
    # d/dz at z = 0: sigma'(0)/tau (exp(0) - softplus(0)) - (1/2)(1/2) - (1/2)(1) = (1 - log 2)/(4 tau) - 3/4
    tau = 0.05
    gw, gl = grads(lambda w, l_: discopop.discopop_loss(w, l_, beta=1.0, tau=tau), 0.0, 0.0)
    assert gw == pytest.approx((1 - math.log(2)) / (4 * tau) - 0.75) and gw > 0 and gl == pytest.approx(-gw)
    # ... into a local minimum at a negative margin (z about -0.12), below the loss at 0
    loss = lambda z: discopop.discopop_loss(T(z), T(0.0), beta=1.0, tau=tau).item()  # noqa: E731
    assert loss(-0.12) < loss(0.0) and loss(-0.12) < loss(-0.05) and loss(-0.12) < loss(-0.2)


# -- every variant: the shared objective wiring ------------------------------------------------------------


@pytest.mark.parametrize("module, params", [
    (simpo, simpo.SimPOParams()), (cpo, cpo.CPOParams()), (orpo, orpo.ORPOParams()), (rdpo, rdpo.RDPOParams()),
    (dpop, dpop.DPOPParams()), (slic_hf, slic_hf.SLiCParams()), (nca, nca.NCAParams()), (exo, exo.EXOParams()),
    (bco, bco.BCOParams()), (sppo, sppo.SPPOParams()), (discopop, discopop.DiscoPOPParams()),
])
def test_objective_gives_one_loss_per_pair_and_the_pair_metrics(module, params):
    tok = TokenLogProbs(torch.full((2, 3), -1.0), torch.ones(2, 3))
    pw, pl = torch.tensor(PI_W, requires_grad=True), torch.tensor(PI_L, requires_grad=True)
    b = LogProbBatch(logps={"chosen": pw, "rejected": pl}, tokens={"chosen": tok, "rejected": tok},
                     ref_logps={"chosen": torch.tensor(REF_W), "rejected": torch.tensor(REF_L)})
    loss, metrics = module.objective(b, params)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(pw.grad).all() and pw.grad.abs().sum() > 0
    assert {"margin", "reward_accuracy"} <= set(metrics)
