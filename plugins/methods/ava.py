"""AVA: approximate variational alignment, AVRIL's variational Bayesian IRL on the token MDP.

Paper: Cai, Yuan, Shi, Lin, arXiv 2411.09341 (AAAI 2025), building on AVRIL (Chan & van der Schaar,
ICLR 2021; code XanderJC/scalable-birl, ``avril.elbo``). No public AVA code was found.

**The method.** The LM's logits give a Q-function with a Boltzmann policy B(a|s) = softmax(beta Q(s,.)),
and a reward head beside the policy gives a Gaussian q(R | y_1..y_t+1) = N(mu_t, sigma_t^2) per
response position (MethodSpec.modules + needs_hidden). AVA-d maximises over demonstration transitions
(y_1..t, y_t+1, y_1..t+1, y_t+2)

    F_d = sum_t [ beta log B(y_t+1 | y_1..t) - KL(q_t || N(0,1)) + lambda log q_t(delta_t) ],
    delta_t = Q(y_1..t, y_t+1) - gamma Q(y_1..t+1, y_t+2),

the TD term forcing the TD error to be a likely reward sample (this is what makes AVA differ from SFT;
with it dropped and beta = 1 AVA-d is exactly SFT). AVA-p (preferences) adds -beta log B on the
rejected response and the contrastive CER term sigma(E_q[R_T | y+] - E_q[R_T | y-]) on the LAST
step's reward means. We minimise the negatives.

**Q, our definition** (``q`` parameter). ``"logits"`` (default): Q = logits / beta, so B = pi_theta
and term 1 is beta log pi (SFT at beta = 1), and delta uses the raw logits, whose per-state offset the
TD term is free to shape. ``"logsoftmax"``: Q = log pi_theta, B = softmax(beta log pi) (= pi at
beta = 1). ``"ptq"``: the paper's pre-trained-Q form taken literally, Q = log softmax_a(alpha pi(a|s))
(a softmax over probabilities).

**Where the reward head reads.** R(y_1..t+1) must see token t+1, so it is read from the hidden state
at that token's position (the state predicting token t+2). The sampler appends one filler token (the
pad id) to every response so that the full response's state exists too; the filler is never trained
on (masked out of every term) and, attention being causal, changes nothing before it.
The TD/KL terms run over the T-1 adjacent response-token pairs: **a single-token response (didactic-r1)
has no (s_t+1, a_t+1), so its TD term is empty** and AVA-d reduces to (beta-scaled) SFT there; use
``didactic-multi-r1`` (9 tokens) to exercise it.

**Choices where the paper is silent [U in METHODS.md].** beta = 1, lambda = 1, gamma = 1 (AVRIL's code
has lambda = gamma = 1 implicitly), alpha = 1 (ptq only), cer_weight = 1. The reward head is one
linear layer H -> (mu, log sigma), zero-initialised so it starts at the N(0,1) prior; log sigma is
clamped to [-7, 5]; gradients of the reward terms reach the shared transformer (TQR shares it). AVA-p
applies the KL and TD terms to both responses (the paper does not say). No attention reweighting
("rwt"). Terms are summed over positions and averaged over rows. Train defaults are ``sft``'s (50 steps,
lr 1e-3), so that on one-token tasks ava-d reproduces sft exactly and elsewhere differs by the TD term.

**Uses.** Direct optimisation is the method itself. :func:`sequence_reward` builds a
``(prompt, completion) -> float`` reward from a trained head (last step's E_q[R] = mu_T; for best-of-n
or as ``ctx.state["reward"]``), :func:`token_rewards` a per-token one (E_q[R_t] = mu_t; dense rewards
for PPO).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harness import (
    DEMONSTRATIONS,
    PREFERENCES,
    Completion,
    LogProbBatch,
    MethodSpec,
    Prompt,
    RoundContext,
    Row,
    Sequence,
    hookimpl,
    param,
)
from harness.divergence import portable as portable_model
from harness.divergence import rebuild as rebuild_model
from harness.lm import TokenLogProbs, sequence_logprobs
from harness.samplers import offline_demonstrations, offline_preferences

PAPER = "Cai et al. 2024, arXiv 2411.09341 (AVA, AAAI 2025); AVRIL: Chan & van der Schaar, ICLR 2021"
Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class AVAParams:
    beta: float = param(1.0, "Boltzmann inverse temperature: B = softmax(beta Q) (ours; paper [U])", gt=0)
    lam: float = param(1.0, "lambda, weight of the TD log-likelihood term (AVRIL code: 1)")
    gamma: float = param(1.0, "discount in delta_t = Q(s_t, a_t) - gamma Q(s_t+1, a_t+1) (AVRIL code: 1)")
    q: Literal["logits", "logsoftmax", "ptq"] = param(
        "logits", "Q = logits/beta | log pi | log softmax(alpha pi) (ours: logits)"
    )
    alpha: float = param(1.0, "temperature alpha of the 'ptq' form (ours; paper [U])")
    limit: int | None = param(None, "use at most this many demonstrations or pairs (None = all)")


@dataclass(frozen=True)
class AVAPParams(AVAParams):
    cer_weight: float = param(1.0, "weight of the contrastive CER term sigma(E R+_T - E R-_T) (ours)")


class RewardHead(nn.Module):
    """One linear layer from the hidden state to (mu, log sigma), zero-initialised (the N(0,1) prior)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 2)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.proj(hidden.float()).unbind(-1)
        return mu, log_sigma.clamp(-7.0, 5.0)


def make_head(model: Any, params: Any) -> RewardHead:
    """``MethodSpec.modules``: the reward head beside ``model``."""
    return RewardHead(model.config.hidden_size).to(next(model.parameters()).device)


# -- pure pieces -------------------------------------------------------------------------------------------


def boltzmann(
    token_logps: torch.Tensor, logits: torch.Tensor, *, q: str, beta: float, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q of the taken actions and log B(a|s) = log softmax(beta Q)(a), both ``[B, T]``.

    ``token_logps`` are log pi of the taken tokens, ``logits`` the ``[B, T, V]`` logits of those states.
    """
    if q == "logits":
        q_all = logits / beta
        q_taken = (token_logps + logits.logsumexp(-1)) / beta
    elif q == "logsoftmax":
        q_all, q_taken = logits.log_softmax(-1), token_logps
    elif q == "ptq":
        q_all = F.log_softmax(alpha * logits.softmax(-1), -1)
        q_taken = alpha * token_logps.exp() - (alpha * logits.softmax(-1)).logsumexp(-1)
    else:
        raise ValueError(f"unknown Q form {q!r}; use logits, logsoftmax or ptq")
    return q_taken, beta * q_taken - (beta * q_all).logsumexp(-1)


def td_errors(q_taken: torch.Tensor, *, gamma: float) -> torch.Tensor:
    """delta_t = Q(s_t, a_t) - gamma Q(s_t+1, a_t+1) for t = 0..T-2, ``[B, T-1]``."""
    return q_taken[:, :-1] - gamma * q_taken[:, 1:]


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) = (-log sigma^2 - 1 + sigma^2 + mu^2) / 2, elementwise."""
    return 0.5 * (-2 * log_sigma - 1 + (2 * log_sigma).exp() + mu**2)


def gaussian_logpdf(x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, sigma^2), elementwise."""
    return -0.5 * math.log(2 * math.pi) - log_sigma - 0.5 * ((x - mu) / log_sigma.exp()) ** 2


class Transitions(NamedTuple):
    """One role's tensors: ``log_b``, ``resp_mask`` ``[B, T]``; ``delta``, ``mu``, ``log_sigma``,
    ``td_mask`` ``[B, T-1]`` (the reward of transition t is read after token t+1); ``mu_last`` ``[B]``."""

    log_b: torch.Tensor
    resp_mask: torch.Tensor
    delta: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    td_mask: torch.Tensor
    mu_last: torch.Tensor


def boltzmann_term(t: Transitions, *, beta: float) -> torch.Tensor:
    """beta * sum_t log B(y_t+1 | y_1..t) per row."""
    return beta * (t.log_b * t.resp_mask).sum(-1)


def variational_terms(t: Transitions, *, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: sum_t KL(q_t || N(0,1)) and sum_t log q_t(delta_t) over the TD transitions."""
    kl = (gaussian_kl(t.mu, t.log_sigma) * t.td_mask).sum(-1)
    td = (gaussian_logpdf(t.delta, t.mu, t.log_sigma) * t.td_mask).sum(-1)
    return kl, td


def _metrics(t: Transitions, policy: torch.Tensor, kl: torch.Tensor, td: torch.Tensor) -> Metrics:
    n_td = t.td_mask.sum().clamp(min=1)
    return {
        "log_b": policy.mean().detach(),
        "kl_prior": kl.mean().detach(),
        "td_loglik": td.mean().detach(),
        "td_error": ((t.delta * t.td_mask).abs().sum() / n_td).detach(),
        "reward_mu": ((t.mu * t.td_mask).sum() / n_td).detach(),
    }


def ava_d_loss(t: Transitions, *, beta: float, lam: float) -> tuple[torch.Tensor, Metrics]:
    """-F_d per row: -beta sum_t log B + sum_t [KL(q_t || N(0,1)) - lambda log q_t(delta_t)].

    A row with one response token has no TD transition: its loss is -beta log B (SFT at beta = 1, Q = logits).
    """
    policy = boltzmann_term(t, beta=beta)
    kl, td = variational_terms(t, lam=lam)
    return -policy + kl - lam * td, _metrics(t, policy, kl, td)


def cer_term(mu_last_chosen: torch.Tensor, mu_last_rejected: torch.Tensor) -> torch.Tensor:
    """The contrastive CER objective sigma(E_q[R_T | y+] - E_q[R_T | y-]) per pair (to be maximised)."""
    return torch.sigmoid(mu_last_chosen - mu_last_rejected)


def ava_p_loss(
    chosen: Transitions, rejected: Transitions, *, beta: float, lam: float, cer_weight: float
) -> tuple[torch.Tensor, Metrics]:
    """-(F_p + cer_weight F_c) per pair: -beta log B(y+) + beta log B(y-) + KL and TD terms of both
    responses - cer_weight sigma(E R+_T - E R-_T)."""
    pol_w, pol_l = boltzmann_term(chosen, beta=beta), boltzmann_term(rejected, beta=beta)
    kl_w, td_w = variational_terms(chosen, lam=lam)
    kl_l, td_l = variational_terms(rejected, lam=lam)
    cer = cer_term(chosen.mu_last, rejected.mu_last)
    loss = -pol_w + pol_l + (kl_w + kl_l) - lam * (td_w + td_l) - cer_weight * cer
    metrics = {
        **_metrics(chosen, pol_w, kl_w, td_w),
        "log_b_rejected": pol_l.mean().detach(),
        "cer": cer.mean().detach(),
        "reward_accuracy": (chosen.mu_last > rejected.mu_last).float().mean().detach(),
    }
    return loss, metrics


# -- from a batch to the terms ---------------------------------------------------------------------------


def transitions(tok: TokenLogProbs, head: RewardHead, p: AVAParams) -> Transitions:
    """One role's :class:`Transitions`; each response carries one appended filler token (see above)."""
    mask = tok.mask
    lengths = mask.sum(-1).long()  # response length + 1 (the filler)
    positions = torch.arange(mask.shape[1], device=mask.device)
    resp = mask * (positions[None, :] < (lengths - 1)[:, None]).float()
    q_taken, log_b = boltzmann(tok.token_logps, tok.logits, q=p.q, beta=p.beta, alpha=p.alpha)
    mu, log_sigma = head(tok.hidden)  # position j has read response tokens 0..j-1
    mu_last = mu.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)  # the filler's: the whole response
    delta = td_errors(q_taken, gamma=p.gamma)
    return Transitions(log_b, resp, delta, mu[:, 1:], log_sigma[:, 1:], resp[:, 1:], mu_last)


def objective_d(batch: LogProbBatch, params: AVAParams) -> tuple[torch.Tensor, Metrics]:
    t = transitions(batch.tokens["demo"], batch.modules, params)
    return ava_d_loss(t, beta=params.beta, lam=params.lam)


def objective_p(batch: LogProbBatch, params: AVAPParams) -> tuple[torch.Tensor, Metrics]:
    return ava_p_loss(
        transitions(batch.tokens["chosen"], batch.modules, params),
        transitions(batch.tokens["rejected"], batch.modules, params),
        beta=params.beta, lam=params.lam, cer_weight=params.cer_weight,
    )


# -- samplers: the data with one filler token appended to each response ------------------------------------


def _pad_response(seq: Sequence, filler: int) -> Sequence:
    return Sequence(seq.prompt, (*seq.response, filler))


def _with_filler(rows: list[Row], filler: int) -> list[Row]:
    return [Row({role: _pad_response(seq, filler) for role, seq in r.seqs.items()}, r.values) for r in rows]


def sampler_d(ctx: RoundContext) -> list[Row]:
    """The demonstrations, each response with the filler token appended."""
    return _with_filler(offline_demonstrations(ctx, limit=ctx.params.limit), ctx.policy.pad_id)


def sampler_p(ctx: RoundContext) -> list[Row]:
    """The preference pairs, each response with the filler token appended."""
    return _with_filler(offline_preferences(ctx, limit=ctx.params.limit), ctx.policy.pad_id)


# -- uses of a trained head: rewards through the reward interface ------------------------------------------


@torch.no_grad()
def reward_means(model: Any, head: RewardHead, seqs: list[Sequence], pad_id: int) -> list[torch.Tensor]:
    """E_q[R_t] = mu_t after each response token t of each sequence (a list of ``[T_i]`` tensors)."""
    was_training = model.training
    model.eval()
    try:
        padded = [_pad_response(s, pad_id) for s in seqs]
        out = sequence_logprobs(model, padded, pad_id=pad_id, with_hidden=True)
        mu, _ = head(out.hidden)
    finally:
        model.train(was_training)
    return [mu[i, 1 : len(s.response) + 1].detach().cpu() for i, s in enumerate(seqs)]


class HeadReward:
    """A trained head as a reward through the harness's reward interface (``harness.training.rewards``).

    ``dense=False``: ``(prompt, completion) -> float``, the last step's E_q[R] = mu_T (best-of-n, CER
    ranking, or ``ctx.state["reward"]``). ``dense=True``: ``-> list[float]``, E_q[R_t] = mu_t after each
    response token (dense token rewards for PPO). It keeps frozen copies of the model and head (a
    reward must not drift while the policy trains) and pickles into checkpoints.
    """

    def __init__(self, model: Any, head: RewardHead, pad_id: int, *, dense: bool = False) -> None:
        self.model, self.head = copy.deepcopy(model).eval(), copy.deepcopy(head).eval()
        self.pad_id, self.dense = int(pad_id), dense

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "model": portable_model(self.model)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "model": rebuild_model(state["model"])})

    def batch(self, prompts: list[Prompt], completions: list[Completion]) -> list[float | list[float]]:
        seqs = [Sequence(p, c.ids) for p, c in zip(prompts, completions, strict=True)]
        out: list[float | list[float]] = []
        for start in range(0, len(seqs), 32):
            for mu in reward_means(self.model, self.head, seqs[start : start + 32], self.pad_id):
                out.append(mu.tolist() if self.dense else (float(mu[-1]) if len(mu) else 0.0))
        return out

    def __call__(self, prompt: Prompt, completion: Completion) -> float | list[float]:
        return self.batch([prompt], [completion])[0]


def sequence_reward(lm: Any, head: RewardHead) -> HeadReward:
    """The last step's E_q[R] as a ``(prompt, completion) -> float`` reward (best-of-n, ranking)."""
    return HeadReward(lm.model, head, lm.pad_id)


def token_rewards(lm: Any, head: RewardHead) -> HeadReward:
    """E_q[R_t] = mu_t per response token as a ``(prompt, completion) -> list[float]`` reward (PPO)."""
    return HeadReward(lm.model, head, lm.pad_id, dense=True)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``ava-d`` (demonstrations) and ``ava-p`` (preferences)."""
    common = {"paper": PAPER, "reference": "none", "needs_hidden": True, "modules": make_head,
              "train_defaults": {"steps": 50, "lr": 1e-3},
              "real_train_defaults": {"lr": 5e-7}}  # the preference methods' order (DPO: 5e-7 .. 1e-6)
    register(MethodSpec(
        name="ava-d",
        family="imitation",
        description="AVA from demonstrations: Boltzmann policy on the LM's Q, Gaussian token reward head, "
        "TD-error likelihood (variational Bayesian IRL)",
        sampler=sampler_d, objective=objective_d, params=AVAParams, needs=frozenset({DEMONSTRATIONS}),
        **common,
    ))
    register(MethodSpec(
        name="ava-p",
        family="preference",
        description="AVA from preferences: contrastive Boltzmann terms, TD-error likelihood and the CER "
        "last-step reward ranking",
        sampler=sampler_p, objective=objective_p, params=AVAPParams, needs=frozenset({PREFERENCES}),
        **common,
    ))
