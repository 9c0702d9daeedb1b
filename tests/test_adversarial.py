"""Adversarial imitation and the shared discriminator (harness.training.divergence): pieces, pickling, a seeded run."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from alignment_harness_plugins.methods.adversarial import HISTORY, policy_gradient
from harness.core.data import Completion, Prompt, Sequence
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.training.divergence import Discriminator, bce_loss, gail_reward, ranking_auc
from harness.training.trainer import TrainConfig
from tests.test_gsil import host, make_trainer  # noqa: F401 - fixtures


def test_reward_forms_and_bce_hand_values():
    logit = torch.tensor([0.0, 2.0, -1.0])
    d = torch.sigmoid(logit)
    assert torch.allclose(gail_reward(logit), -torch.log1p(-d))  # -log(1 - D)
    assert bce_loss(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(math.log(2))
    assert bce_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(math.log1p(math.exp(2)))


def test_ranking_auc_hand_values():
    assert ranking_auc([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert ranking_auc([1.0], [1.0]) == 0.5
    assert ranking_auc([0.0, 2.0], [1.0]) == 0.5
    with pytest.raises(ValueError):
        ranking_auc([], [1.0])


@pytest.fixture(scope="module")
def nano_lm():
    m = load_model("tiny:nano", seed=0)
    return LM(m.model, m.tokenizer)


def _seqs(responses: list[tuple[int, ...]]) -> list[Sequence]:
    return [Sequence(Prompt((1, 100 + i)), r) for i, r in enumerate(responses)]


def test_token_logits_end_at_the_sequence_logit_and_the_filler_is_unread(nano_lm):
    disc = Discriminator.from_lm(nano_lm)
    with torch.no_grad():
        disc.head.weight.normal_()
    seqs = _seqs([(5, 9, 11), (17,)])
    token, mask = disc.token_scores(seqs)
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    seq = disc.scores(seqs)
    assert torch.allclose(token[0, 2], seq[0], atol=1e-5) and torch.allclose(token[1, 0], seq[1], atol=1e-5)
    disc.token_level = True
    rewards = disc.batch([s.prompt for s in seqs], [Completion(s.prompt, s.response, "") for s in seqs])
    assert [len(r) for r in rewards] == [3, 1]


def test_discriminator_fits_and_survives_pickling(nano_lm):
    disc = Discriminator.from_lm(nano_lm, form="gail")
    pos, neg = _seqs([(5,)] * 4 + [(6,)] * 4), _seqs([(50,)] * 4 + [(51,)] * 4)
    before = disc.accuracy(pos, neg)
    fit = disc.fit([(s, 1.0) for s in pos] + [(s, 0.0) for s in neg], steps=20, lr=3e-3, batch_size=8)
    assert before == 0.5 and disc.accuracy(pos, neg) == 1.0 and fit["d_loss"] < 0.5
    # Run once with hidden states, so transformers has installed its (unpicklable) capturing hooks.
    comps = [Completion(s.prompt, s.response, "") for s in pos[:2]]
    scores = disc.batch([c.prompt for c in comps], comps)
    copy = pickle.loads(pickle.dumps(disc))  # ctx.state goes into every checkpoint
    assert copy.batch([c.prompt for c in comps], comps) == pytest.approx(scores, abs=1e-6)
    assert all(s > 0 for s in scores)  # the GAIL reward is positive


def test_policy_gradient_dispatch():
    module, params = policy_gradient("rloo", kl_coef=0.1, n=4)
    assert module.__name__.endswith("rloo") and params.kl_coef == 0.1 and params.n == 4
    module, params = policy_gradient("ppo", kl_coef=0.1, n=4)
    assert module.__name__.endswith("ppo") and params.kl_init == 0.2  # PPO keeps its own adaptive KL
    with pytest.raises(ValueError):
        policy_gradient("trpo")


@pytest.mark.slow
def test_discriminator_accuracy_rises_then_falls_as_the_policy_imitates(host):  # noqa: F811
    cfg = TrainConfig(rounds=15, steps=4, batch_size=100, lr=1e-3, optimizer="adam", schedule="constant",
                      warmup_ratio=0.0)  # the method's train defaults, 15 of its 20 rounds
    t = make_trainer(host, "adversarial", cfg, warm=True)
    records = [rec for r in range(cfg.rounds) for rec in t.train_round(r)]
    history = t.state[HISTORY]
    acc = [h["d_accuracy"] for h in history]
    # Seed 0 gives 0.91 0.905 0.915 0.895 0.9 0.91 0.855 0.845 0.84 0.795 0.775 0.76 0.7 0.69 0.695.
    assert history[0]["d_accuracy_before"] == 0.5  # the untrained discriminator (zero head) is at chance
    assert max(acc[:3]) > 0.85  # rises: demonstrations and the warm-started policy are easy to tell apart
    assert sum(acc[-3:]) / 3 < max(acc[:3]) - 0.12  # falls as the policy's samples look like demonstrations
    assert records[-1].metrics["d_accuracy"] == pytest.approx(acc[-1])  # also in the step metrics
    rewards = t.policy.next_token_logprobs([t.data.prompts()[0]]).exp()[0, :100]
    assert float(rewards[60:80].sum() / rewards.sum()) > 0.5  # mass moved to the demonstrated peak (70)


def test_adversarial_token_level_with_ppo_and_resume(host, tmp_path):  # noqa: F811
    cfg = TrainConfig(rounds=2, steps=2, batch_size=50, lr=1e-3)
    settings = {"level": "token", "pg": "ppo", "form": "gail", "n": 5, "d_steps": 3}
    t = make_trainer(host, "adversarial", cfg, **settings)
    t.checkpoint_dir = tmp_path
    t.train_round(0)
    assert t.state["discriminator"].token_level and len(t.state[HISTORY]) == 1
    resumed = make_trainer(host, "adversarial", cfg, **settings)
    resumed.checkpoint_dir = tmp_path
    assert resumed.try_resume() and resumed.start_round == 1
    disc = resumed.state["discriminator"]  # rebuilt from the checkpoint with its settings
    assert disc.token_level and disc.form == "gail"
    for p, q in zip(disc.parameters(), t.state["discriminator"].parameters(), strict=True):
        assert torch.equal(p.cpu(), q.cpu())
    resumed.train_round(1)
    assert [h["round"] for h in resumed.state[HISTORY]] == [0, 1]
