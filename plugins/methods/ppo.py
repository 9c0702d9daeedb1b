"""PPO: clipped policy optimisation with a value head, GAE and an adaptive KL penalty to the reference.

Paper: Schulman et al. 2017 (PPO, arXiv 1707.06347) in the RLHF form of Ziegler et al. 2019 (arXiv
1909.08593): per-token reward ``r_t = R_t - kl_coef * (log pi_old(a_t) - log pi_ref(a_t))`` with the
task reward R at the last token (or dense), GAE advantages, several epochs on each sampled batch.
Defaults from Tajwar et al. 2024 (arXiv 2404.14367), whose PPO (TRL-based) uses clip 0.2, value
coefficient 0.1, adaptive KL with initial coefficient 0.2 and target 6, GAE lambda 0.95 (lr 1e-6 on
Pythia-1.4B; ours is sized for the tiny didactic runs).

**Per round** (the sampler; everything a step needs is fixed here, so the objective is pure and
batch-independent):

1. ``n`` samples per prompt from the current policy, scored by the method's reward (dense rewards are
   kept per token, :func:`harness.training.rewards.token_rewards`);
2. one no-grad forward of the policy gives pi_old's per-token log-probs and the hidden states the
   value head reads (old values V_old); one of the reference gives pi_ref's per-token log-probs;
3. KL-penalised per-token rewards, GAE (gamma, lambda) -> advantages and returns; advantages are
   whitened over all of the round's tokens (TRL whitens over the rollout batch);
4. the adaptive controller (``ctx.state``, saved with checkpoints) is updated with the round's mean
   sequence KL, Ziegler et al.'s rule with ``n_steps`` = the round's sample count.

Per-token quantities travel in row values ``old_logp@t, old_value@t, adv@t, ret@t``
(:func:`harness.training.pg.token_values`). **The value head** is a linear layer on the policy's final hidden
state (``MethodSpec.modules``; its parameters join the optimizer, and the value loss also trains the
shared trunk, as in TRL's value-head model). The sampler reaches it through a weak map from the
policy model to its head (:func:`value_head_of`), because round contexts don't carry the modules.

**Loss** per row: ``mean_t clipped_surrogate + vf_coef * mean_t clipped_value_loss - entropy_coef *
mean_t H`` (token means within the row). **Sample reuse** (PPO epochs) is ``train.steps``: with the
default ``train.batch_size`` = one round's samples, each step is one epoch over the fresh batch (TRL's
default: 4 epochs of one minibatch each).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

from harness import (
    HarnessError,
    LogProbBatch,
    RoundContext,
    Row,
    hookimpl,
    param,
    pg,
)
from harness.lm import masked_mean
from harness.pg import (
    AdaptiveKLController,
    clipped_surrogate,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    kl_k1,
    kl_k3,
    pad_rows,
    rollouts,
    stack_token_values,
    token_logprobs,
    token_values,
    whiten,
)
from harness.rewards import sequence_reward, token_rewards

PAPER = "Schulman et al. 2017, arXiv 1707.06347; Ziegler et al. 2019, arXiv 1909.08593; Tajwar et al. 2024"
Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PPOParams(pg.OnPolicyParams):
    n: int = param(10, "samples per prompt per round (bandit budget: N = 10)", ge=1)
    clip: float = param(0.2, "policy ratio clip epsilon (Tajwar et al.: 0.2)", ge=0)
    vf_coef: float = param(0.1, "value-loss coefficient (Tajwar et al.: 0.1)", ge=0)
    value_clip: float = param(0.2, "value clip range around the old values (TRL: 0.2)", ge=0)
    kl_init: float = param(0.2, "initial KL-penalty coefficient (Tajwar et al.: 0.2)", ge=0)
    kl_target: float | None = param(6.0, "target sequence KL of the adaptive controller (None = fixed)", gt=0)
    kl_horizon: int = param(10_000, "horizon of the adaptive KL controller (Ziegler et al.: 10000)", ge=1)
    gamma: float = param(1.0, "discount", ge=0, le=1)
    lam: float = param(0.95, "GAE lambda (Tajwar et al.: 0.95)", ge=0, le=1)
    whiten_advantages: bool = param(True, "whiten advantages over the round's tokens (TRL does)")
    entropy_coef: float = param(0.0, "entropy bonus")


class ValueHead(torch.nn.Module):
    """``V(s_t) = w . h_t + b`` on the hidden state that predicts token t; zero-initialised (V = 0)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


_HEADS: weakref.WeakKeyDictionary[Any, ValueHead] = weakref.WeakKeyDictionary()


def make_value_head(model: Any, params: PPOParams) -> ValueHead:
    """``MethodSpec.modules``: a value head sized to ``model``, remembered for the sampler."""
    head = ValueHead(model.config.hidden_size).to(next(model.parameters()).device)
    _HEADS[model] = head
    return head


def value_head_of(model: Any) -> ValueHead:
    """The value head made for ``model`` by :func:`make_value_head`."""
    try:
        return _HEADS[model]
    except KeyError:
        raise HarnessError(
            "ppo: no value head for this policy; build the Trainer with modules=spec.modules(policy.model, params)"
        ) from None


def ppo_loss(logp: torch.Tensor, mask: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
             values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, *, clip: float,
             vf_coef: float, value_clip: float) -> tuple[torch.Tensor, Metrics]:
    """Per-row PPO loss: token-mean clipped surrogate + ``vf_coef`` x token-mean clipped value loss."""
    pg_t, clipped = clipped_surrogate(logp, old_logp, advantages, clip)
    vf_t = clipped_value_loss(values, old_values, returns, value_clip)
    pg_loss, vf = masked_mean(pg_t, mask), masked_mean(vf_t, mask)
    metrics = {
        "pg_loss": pg_loss.mean().detach(),
        "vf_loss": vf.mean().detach(),
        "clipfrac": masked_mean(clipped, mask).mean(),
        "approx_kl_old": masked_mean(kl_k3(logp.detach(), old_logp), mask).mean(),
    }
    return pg_loss + vf_coef * vf, metrics


def objective(batch: LogProbBatch, params: PPOParams) -> tuple[torch.Tensor, Metrics]:
    tok = batch.tokens["sample"]
    width = tok.mask.shape[1]
    get = lambda name: stack_token_values(batch.values, name, width)  # noqa: E731
    values = batch.modules(tok.hidden)
    loss, metrics = ppo_loss(tok.token_logps, tok.mask, get("old_logp"), get("adv"), values, get("old_value"),
                             get("ret"), clip=params.clip, vf_coef=params.vf_coef, value_clip=params.value_clip)
    if params.entropy_coef:
        entropy = masked_mean(entropy_from_logits(tok.logits), tok.mask)
        loss = loss - params.entropy_coef * entropy
        metrics["entropy"] = entropy.mean().detach()
    return loss, {**metrics, "reward": batch.values["reward"].mean(), "kl_coef": batch.values["kl_coef"].mean()}


def sampler(ctx: RoundContext) -> list[Row]:
    p: PPOParams = ctx.params
    if ctx.reference is None:
        raise HarnessError("ppo needs a reference model for its KL penalty")
    outs = [o for o in rollouts(ctx, **p.sampling()) if o.completion.ids]
    seqs = [o.sequence for o in outs]
    head = value_head_of(ctx.policy.model)
    old_logp, hidden = token_logprobs(ctx.policy, seqs, with_hidden=True)
    ref_logp, _ = token_logprobs(ctx.reference, seqs)
    with torch.no_grad():
        old_values = [head(h).float().cpu() for h in hidden]
    width = max(len(s.response) for s in seqs)
    mask = pad_rows([torch.ones(len(s.response)) for s in seqs], width)
    logp, ref, values = pad_rows(old_logp, width), pad_rows(ref_logp, width), pad_rows(old_values, width)
    kl = kl_k1(logp, ref) * mask
    controller: AdaptiveKLController = ctx.state.setdefault(
        "ppo/kl_ctl", AdaptiveKLController(p.kl_init, p.kl_target, p.kl_horizon))
    coef = controller.value
    env = pad_rows([torch.tensor(token_rewards(o.reward, len(s.response))) for o, s in zip(outs, seqs, strict=True)],
               width)
    adv, ret = gae(env - coef * kl, values, mask, gamma=p.gamma, lam=p.lam)
    if p.whiten_advantages:
        adv = whiten(adv, mask)
    controller.update(float(kl.sum(-1).mean()), n_steps=len(seqs))
    rows = []
    for i, (o, s) in enumerate(zip(outs, seqs, strict=True)):
        n = len(s.response)
        rows.append(Row({"sample": s}, {
            "reward": sequence_reward(o.reward), "kl_coef": coef,
            **token_values("old_logp", old_logp[i].tolist(), width),
            **token_values("old_value", values[i, :n].tolist(), width),
            **token_values("adv", adv[i, :n].tolist(), width),
            **token_values("ret", ret[i, :n].tolist(), width),
        }))
    return rows


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``ppo``."""
    register(pg.on_policy_spec(
        "ppo", "PPO: clipped surrogate, value head + GAE, adaptive KL penalty to the reference, "
        "several epochs per sampled batch",
        paper=PAPER, sampler=sampler, objective=objective, params=PPOParams, needs_hidden=True,
        modules=make_value_head,
        real_train_defaults={"lr": 1e-6},  # PPO (Ouyang et al. / Stiennon et al.): lr 1e-6
    ))
