"""AVA: hand values of its pieces, SFT as the single-token case, the filler token, tiny runs, rewards."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from alignment_harness_plugins.methods import ava
from alignment_harness_plugins.methods.ava import (
    AVAParams,
    AVAPParams,
    HeadReward,
    RewardHead,
    Transitions,
    ava_d_loss,
    ava_p_loss,
    boltzmann,
    gaussian_kl,
    gaussian_logpdf,
    td_errors,
)
from alignment_harness_plugins.methods.sft import sft_loss
from harness.core.data import Completion, Prompt, Row, Sequence
from harness.models.loading import load_model
from harness.models.logprobs import batch_logprobs
from harness.training.trainer import TrainConfig
from tests.test_gsil import host, make_trainer, record_rows  # noqa: F401 - fixtures


def test_gaussian_pieces_hand_values():
    mu, log_sigma = torch.tensor([1.0]), torch.tensor([math.log(2.0)])
    assert gaussian_kl(mu, log_sigma).item() == pytest.approx(0.5 * (-2 * math.log(2) - 1 + 4 + 1), rel=1e-6)
    assert gaussian_kl(torch.zeros(1), torch.zeros(1)).item() == 0.0  # the prior itself
    x = torch.tensor([0.3])
    expected = torch.distributions.Normal(1.0, 2.0).log_prob(x)
    assert gaussian_logpdf(x, mu, log_sigma).item() == pytest.approx(expected.item(), rel=1e-6)


def test_td_errors_hand_values():
    q = torch.tensor([[1.0, 2.0, 4.0]])
    assert td_errors(q, gamma=1.0).tolist() == [[-1.0, -2.0]]
    assert td_errors(q, gamma=0.5).tolist() == [[0.0, 0.0]]
    assert td_errors(q[:, :1], gamma=1.0).shape == (1, 0)  # one token: no transition


def test_boltzmann_forms():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g) * 2
    ids = torch.randint(7, (2, 3), generator=g)
    logp_all = logits.log_softmax(-1)
    lp = logp_all.gather(-1, ids[..., None]).squeeze(-1)
    # Q = logits / beta: B = pi whatever beta, Q(s, a) = logit / beta.
    q, log_b = boltzmann(lp, logits, q="logits", beta=2.0)
    assert torch.allclose(log_b, lp, atol=1e-5)
    assert torch.allclose(q, logits.gather(-1, ids[..., None]).squeeze(-1) / 2.0, atol=1e-5)
    # Q = log pi: B = softmax(beta log pi).
    q, log_b = boltzmann(lp, logits, q="logsoftmax", beta=2.0)
    assert torch.allclose(q, lp) and torch.allclose(
        log_b, (2 * logp_all).log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1), atol=1e-5)
    # ptq: Q = log softmax(alpha pi), taken literally.
    q, log_b = boltzmann(lp, logits, q="ptq", beta=1.5, alpha=3.0)
    q_all = (3.0 * logp_all.exp()).log_softmax(-1)
    assert torch.allclose(q, q_all.gather(-1, ids[..., None]).squeeze(-1), atol=1e-5)
    expected = (1.5 * q_all).log_softmax(-1).gather(-1, ids[..., None]).squeeze(-1)
    assert torch.allclose(log_b, expected, atol=1e-5)


def _transitions(log_b, delta, mu, log_sigma, mu_last=(0.0,)) -> Transitions:
    log_b, delta = torch.tensor([log_b]), torch.tensor([delta])
    return Transitions(log_b, torch.ones_like(log_b), delta, torch.tensor([mu]), torch.tensor([log_sigma]),
                       torch.ones_like(delta), torch.tensor(list(mu_last)))


def test_ava_d_loss_hand_value():
    # Two tokens, one transition: -beta(lb1 + lb2) + KL(N(mu, s^2)||N(0,1)) - lam log N(delta; mu, s^2).
    t = _transitions([-1.0, -2.0], [0.5], [0.2], [math.log(0.5)])
    loss, m = ava_d_loss(t, beta=0.5, lam=2.0)
    kl = 0.5 * (-2 * math.log(0.5) - 1 + 0.25 + 0.04)
    loglik = -0.5 * math.log(2 * math.pi) - math.log(0.5) - 0.5 * ((0.5 - 0.2) / 0.5) ** 2
    assert loss.item() == pytest.approx(0.5 * 3.0 + kl - 2.0 * loglik, rel=1e-6)
    assert m["td_error"].item() == pytest.approx(0.5)


def test_ava_p_loss_hand_value():
    w = _transitions([-1.0], [], [], [], mu_last=(0.7,))  # single tokens: no TD terms
    lose = _transitions([-3.0], [], [], [], mu_last=(-0.3,))
    loss, m = ava_p_loss(w, lose, beta=1.0, lam=1.0, cer_weight=2.0)
    assert loss.item() == pytest.approx(1.0 - 3.0 - 2.0 / (1 + math.exp(-1.0)), rel=1e-6)
    assert m["reward_accuracy"].item() == 1.0


@pytest.fixture(scope="module")
def nano():
    return load_model("tiny:nano", seed=0)


def _rows(responses: list[tuple[int, ...]], filler: int | None) -> list[Row]:
    tail = () if filler is None else (filler,)
    return [Row({"demo": Sequence(Prompt((1, 100 + i)), (*r, *tail))}) for i, r in enumerate(responses)]


def test_single_token_ava_d_is_sft_and_the_filler_is_never_trained(nano):
    head = RewardHead(nano.model.config.hidden_size)
    with torch.no_grad():
        head.proj.weight.normal_()  # a non-trivial head: its terms must still vanish on one token
    params = AVAParams()
    single = [(5,), (17,), (42,)]
    batch = batch_logprobs(nano.model, _rows(single, 0), pad_id=0, with_hidden=True, modules=head)
    loss, m = ava.objective_d(batch, params)
    plain = batch_logprobs(nano.model, _rows(single, None), pad_id=0)
    assert torch.allclose(loss, sft_loss(plain.logps["demo"]), atol=1e-5)  # TD term empty: exactly SFT
    assert m["kl_prior"].item() == 0.0 and m["td_loglik"].item() == 0.0
    multi = [(5, 9, 11), (17, 3, 3)]
    a, _ = ava.objective_d(batch_logprobs(nano.model, _rows(multi, 0), pad_id=0, with_hidden=True,
                                          modules=head), params)
    b, _ = ava.objective_d(batch_logprobs(nano.model, _rows(multi, 77), pad_id=0, with_hidden=True,
                                          modules=head), params)
    assert torch.allclose(a, b)  # the appended filler changes nothing
    sft = sft_loss(batch_logprobs(nano.model, _rows(multi, None), pad_id=0).logps["demo"])
    assert not torch.allclose(a, sft)  # with >= 2 tokens the TD and KL terms are live


def test_ava_d_runs_on_the_multi_token_bandit_and_its_head_gives_rewards(host):  # noqa: F811
    t = make_trainer(host, "ava-d", TrainConfig(rounds=1, steps=12, batch_size=8, lr=3e-3),
                     benchmark="didactic-multi-r1")
    seen = record_rows(t)
    recs = t.train_round(0)
    assert all(len(r.seqs["demo"].response) == 10 for r in seen[0])  # 9 actions + the filler
    first, last = recs[0].metrics, recs[-1].metrics
    assert last["loss"] < first["loss"]
    assert last["td_loglik"] != 0.0 and last["kl_prior"] > 0.0  # the TD term is live with 9 tokens
    assert t.modules.proj.weight.abs().sum() > 0  # the head was trained (it starts at zero)
    demo = seen[0][0].seqs["demo"]
    completion = Completion(demo.prompt, demo.response[:-1], "")
    dense = ava.token_rewards(t.policy, t.modules)(demo.prompt, completion)
    scalar = ava.sequence_reward(t.policy, t.modules)(demo.prompt, completion)
    assert len(dense) == 9 and scalar == pytest.approx(dense[-1], abs=1e-5)
    rm = ava.sequence_reward(t.policy, t.modules)
    with torch.no_grad():
        t.modules.proj.bias.add_(1.0)  # the reward is a frozen copy: later training does not move it
    assert rm(demo.prompt, completion) == pytest.approx(scalar, abs=1e-6)
    assert isinstance(rm, HeadReward)
    assert pickle.loads(pickle.dumps(rm))(demo.prompt, completion) == pytest.approx(scalar, abs=1e-6)


def test_ava_p_runs_on_preferences(host):  # noqa: F811
    t = make_trainer(host, "ava-p", TrainConfig(rounds=1, steps=10, batch_size=8, lr=3e-3),
                     benchmark="didactic-multi-r1")
    recs = t.train_round(0)
    assert set(recs[-1].metrics) >= {"cer", "log_b_rejected", "reward_accuracy", "td_loglik"}
    assert recs[-1].metrics["log_b_rejected"] < recs[0].metrics["log_b_rejected"]  # pushed down
    assert AVAPParams().cer_weight == 1.0
