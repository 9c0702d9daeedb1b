"""The divergence lens: discriminators between two sources of responses, and the rewards they define.

Sun 2024 (arXiv 2403.12017) reads alignment from demonstrations as divergence minimisation between the
demonstrator's trajectory distribution d* and the policy's d_pi:

- forward KL(d* || d_pi) is exactly SFT (maximum likelihood; mass-covering);
- reverse KL(d_pi || d*) needs the density ratio d*/d_pi, estimated by a discriminator
  D = sigmoid(logit) trained with BCE (demonstrations = 1, policy samples = 0), whose optimum is
  D* = d*/(d* + d_pi), so logit* = log d* - log d_pi. A policy maximising E_pi[logit] minimises the
  reverse KL (the AIRL form); E_pi[-log(1 - D)] gives the GAIL / Jensen-Shannon form.

On the didactic bandit every run already reports both divergences next to the reward:
``didactic-*/forward_kl`` = KL(p* || pi) and ``didactic-*/reverse_kl`` = KL(pi || p*) (exact for one
token, Monte Carlo for nine; see :mod:`alignment_harness_plugins.benchmarks.didactic`).

This module holds what the IRL reward model and adversarial imitation share: :class:`Discriminator`
(a copy of a causal LM backbone plus a linear head, like
:class:`~harness.training.rewards.BradleyTerryRewardModel`, fitted with BCE instead of Bradley-Terry), its
sequence- or token-level logits, the two reward forms, and a ranking AUC.
"""

from __future__ import annotations

import random
from collections.abc import Sequence as Seq
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from harness.core.data import Completion, Prompt, Sequence
from harness.models.logprobs import masked_mean, sequence_logprobs
from harness.training.rewards import BradleyTerryRewardModel

if TYPE_CHECKING:
    from harness.models.lm import LM

Form = Literal["airl", "gail"]


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-element binary cross-entropy of ``sigmoid(logits)`` against 0/1 ``labels``."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none")


def airl_reward(logits: torch.Tensor) -> torch.Tensor:
    """``log D - log(1 - D) = logit``: the reverse-KL (AIRL) reward."""
    return logits


def gail_reward(logits: torch.Tensor) -> torch.Tensor:
    """``-log(1 - D) = softplus(logit)``: the GAIL / Jensen-Shannon reward (always > 0)."""
    return F.softplus(logits)


REWARD_FORMS = {"airl": airl_reward, "gail": gail_reward}


def ranking_auc(positive: Seq[float], negative: Seq[float]) -> float:
    """P(score of a positive > score of a negative), ties counting one half (the ROC AUC)."""
    if not positive or not negative:
        raise ValueError("ranking_auc needs at least one positive and one negative score")
    pos = torch.tensor([float(x) for x in positive])[:, None]
    neg = torch.tensor([float(x) for x in negative])[None, :]
    return float(((pos > neg).float() + 0.5 * (pos == neg).float()).mean())


def portable(model: Any) -> dict[str, Any]:
    """A picklable snapshot of a transformers model: class, config, dtype and CPU weights.

    Pickling the module itself fails once transformers has installed its output-capturing forward
    hooks (local functions, added on the first forward); ``ctx.state`` is pickled into every
    checkpoint. (The same pattern as ``BradleyTerryRewardModel.__getstate__``, for plain models.)
    """
    first = next(model.parameters())
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"cls": type(model), "config": model.config, "weights": weights, "dtype": first.dtype,
            "device": str(first.device), "training": model.training}


def rebuild(snapshot: dict[str, Any]) -> Any:
    """The model of a :func:`portable` snapshot."""
    model = snapshot["cls"](snapshot["config"])
    model.load_state_dict(snapshot["weights"])
    model.to(dtype=snapshot["dtype"], device=snapshot["device"])
    return model.train(snapshot["training"])


class Discriminator(BradleyTerryRewardModel):
    """``D(x, y) = sigmoid(w . h + b)`` on a causal LM backbone; a reward through ``harness.training.rewards``.

    Sequence level (``token_level=False``): ``h`` is the final hidden state at the last token, as in
    the Bradley-Terry model. Token level: one logit per response token ``t`` from the hidden state that
    has read ``y_1..y_t`` (a discriminator on (s_t, a_t)); its sequence score is the mean over tokens
    and its reward is a per-token list. ``form`` picks the reward: ``airl`` (logit) or ``gail``
    (``-log(1 - D)``). Picklable, so it can live in ``ctx.state``.
    """

    def __init__(self, backbone: Any, pad_id: int, *, form: Form = "airl", token_level: bool = False) -> None:
        super().__init__(backbone, pad_id)
        if form not in REWARD_FORMS:
            raise ValueError(f"unknown reward form {form!r}; use one of {sorted(REWARD_FORMS)}")
        self.form, self.token_level = form, token_level

    @classmethod
    def from_lm(cls, lm: LM, *, form: Form = "airl", token_level: bool = False) -> Discriminator:
        """A discriminator on a copy of ``lm``'s model (LoRA merged; trained together with the head)."""
        base = BradleyTerryRewardModel.from_lm(lm)
        return cls(base.backbone, base.pad_id, form=form, token_level=token_level)

    # Pickling: the Bradley-Terry model's (backbone as class + config + weights), plus our two settings.
    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "form": self.form, "token_level": self.token_level}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.form, self.token_level = state["form"], state["token_level"]

    def token_scores(self, seqs: Seq[Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, T]`` logits, one per response token, and the ``[N, T]`` response mask (gradients flow).

        A filler token appended to each response makes the log-prob engine return the hidden state AT
        every response token (it returns the states that predict tokens); the filler is never read.
        """
        padded = [Sequence(s.prompt, (*s.response, self.pad_id)) for s in seqs]
        out = sequence_logprobs(self.backbone, padded, pad_id=self.pad_id, with_hidden=True)
        hidden = out.hidden[:, 1:]
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1), out.mask[:, 1:]

    def logits(self, seqs: Seq[Sequence]) -> torch.Tensor:
        """``[N]`` sequence logits: the last token's (sequence level) or the token mean (token level)."""
        if not self.token_level:
            return self.scores(seqs)
        token, mask = self.token_scores(seqs)
        return masked_mean(token, mask)

    def fit(
        self, data: Seq[tuple[Sequence, float]], *, steps: int = 50, lr: float = 1e-3, batch_size: int = 32,
        seed: int = 0,
    ) -> dict[str, float]:
        """BCE on ``(sequence, label)`` pairs (1 = the source D should call real), Adam; each step takes
        ``batch_size // 2`` of each label (seeded). Returns the last step's loss and accuracy."""
        pos = [s for s, y in data if y >= 0.5]
        neg = [s for s, y in data if y < 0.5]
        if not pos or not neg:
            raise ValueError("a discriminator needs sequences of both labels")
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        rng = random.Random(seed)
        half = max(1, batch_size // 2)
        metrics: dict[str, float] = {}
        self.backbone.train()
        for _ in range(steps):
            seqs = [rng.choice(pos) for _ in range(half)] + [rng.choice(neg) for _ in range(half)]
            labels = torch.tensor([1.0] * half + [0.0] * half, device=self.head.weight.device)
            if self.token_level:
                token, mask = self.token_scores(seqs)
                loss = masked_mean(bce_loss(token, labels[:, None].expand_as(token)), mask)
                logits = masked_mean(token, mask)
            else:
                logits = self.scores(seqs)
                loss = bce_loss(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            opt.step()
            correct = ((logits > 0).float() == labels).float().mean()
            metrics = {"d_loss": loss.mean().item(), "d_accuracy": correct.item()}
        self.backbone.eval()
        return metrics

    @torch.no_grad()
    def accuracy(self, positives: Seq[Sequence], negatives: Seq[Sequence]) -> float:
        """Balanced accuracy of ``logit > 0`` (positives) / ``<= 0`` (negatives)."""
        pos = (self.logits(list(positives)) > 0).float().mean()
        neg = (self.logits(list(negatives)) <= 0).float().mean()
        return float((pos + neg) / 2)

    @torch.no_grad()
    def batch(self, prompts: Seq[Prompt], completions: Seq[Completion], chunk: int = 64) -> list:
        """Rewards of ``form``: floats (sequence level) or per-token lists (token level)."""
        seqs = [Sequence(p, c.ids) for p, c in zip(prompts, completions, strict=True)]
        out: list = []
        reward = REWARD_FORMS[self.form]
        for start in range(0, len(seqs), chunk):
            part = seqs[start : start + chunk]
            if self.token_level:
                token, mask = self.token_scores(part)
                values = reward(token.float()).cpu()
                out += [values[i, : len(s.response)].tolist() for i, s in enumerate(part)]
            else:
                out += reward(self.scores(part).float()).cpu().tolist()
        return out

    def __call__(self, prompt: Prompt, completion: Completion) -> float | list[float]:
        return self.batch([prompt], [completion])[0]


__all__ = [
    "REWARD_FORMS", "Discriminator", "airl_reward", "bce_loss", "gail_reward", "portable", "ranking_auc",
    "rebuild",
]
