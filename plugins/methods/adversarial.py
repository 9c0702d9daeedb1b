"""Adversarial imitation: a discriminator between demonstrations and policy samples gives the reward.

Paper: Sun 2024, "Supervised Fine-Tuning as Inverse Reinforcement Learning" (arXiv 2403.12017), the
reverse-KL view of alignment from demonstrations (the paper calls it unstable and expensive and did not
run it at scale); the reward forms are AIRL's (Fu et al. 2018) and GAIL's (Ho & Ermon 2016).

**The method.** Alternate (a) a discriminator D = sigmoid(logit) trained with BCE on demonstrations
(label 1) against fresh samples of the current policy (label 0), whose optimum logit is
log d*(y|x) - log d_pi(y|x); (b) a policy-gradient phase on the reward

- ``form=airl``: r = logit D, so E_pi[r] = -KL(pi || d*) at D's optimum (reverse KL, mode-seeking);
- ``form=gail``: r = -log(1 - D) (the Jensen-Shannon form),

at ``level=sequence`` (one logit per response, at its last token) or ``level=token`` (a logit per
(s_t, a_t), dense rewards; :class:`harness.training.divergence.Discriminator`). The policy step REUSES the
on-policy methods: ``pg=rloo`` (leave-one-out baseline; a dense reward is summed) or ``pg=reinforce``
(reward-to-go per token, running-mean baseline), with their sequence-level KL penalty to the
reference in the reward (``kl_coef``). The discriminator is the reward of the round
(``ctx.state["reward"]``), so the samplers of those methods score with it unchanged.

**Per round** (``on_round_start``): draw ``d_samples`` policy samples per prompt, measure the previous
discriminator's accuracy on them (``d_accuracy_before``; the demonstrations are the positives), fit
``d_steps`` Adam steps (the discriminator-to-policy step ratio is ``d_steps : train.steps``), measure
again (``d_accuracy``). Both go to ``ctx.metrics`` and, per round, to
``ctx.state["adversarial/history"]``; ``d_accuracy`` also rides in the rows, so it appears in the
step metrics of ``harness run``.

**Choices (the paper gives no settings).** The discriminator is a copy of the starting policy plus a
zero-initialised linear head, fully fine-tuned, kept across rounds (a fresh Adam each round), each
step a balanced batch of ``d_batch_size``. Defaults ours, sized for the tiny didactic runs: airl,
sequence level, rloo with n = 10, kl_coef = 0 (at D's optimum the reward already carries the
entropy term -log pi), d_steps = 10, d_lr = 1e-3; 20 rounds x 4 policy steps on 100 samples with the
on-policy methods' Adam at a constant lr 1e-3 (the same budget as ``rloo``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from alignment_harness_plugins.methods import ppo, reinforce, rloo
from harness import (
    DEMONSTRATIONS,
    LogProbBatch,
    MethodHooks,
    MethodSpec,
    RoundContext,
    Row,
    derive_seed,
    hookimpl,
    param,
)
from harness.divergence import Discriminator
from harness.pg import ON_POLICY_TRAIN_DEFAULTS, RolloutParams, response_length

PAPER = "Sun 2024, arXiv 2403.12017 (reverse-KL view of AfD); AIRL (Fu et al. 2018), GAIL (Ho & Ermon 2016)"
HISTORY = "adversarial/history"


@dataclass(frozen=True)
class AdversarialParams(RolloutParams):
    n: int = param(10, "policy samples per prompt per round for the policy step", ge=1)
    form: Literal["airl", "gail"] = param("airl", "airl: r = logit D (reverse KL) | gail: -log(1 - D) (JS)")
    level: Literal["sequence", "token"] = param("sequence", "discriminator on responses or on (s_t, a_t)")
    pg: Literal["rloo", "reinforce", "ppo"] = param("rloo", "on-policy method of the policy phase")
    kl_coef: float = param(0.0, "rloo/reinforce: sequence KL(pi || pi_ref) penalty (ppo: its adaptive KL)")
    d_steps: int = param(10, "discriminator Adam steps per round (ratio to train.steps)")
    d_lr: float = param(1e-3, "discriminator learning rate")
    d_batch_size: int = param(32, "discriminator batch (half demonstrations, half policy samples)")
    d_samples: int = param(10, "fresh policy samples per prompt for the discriminator each round")


def policy_gradient(name: str, *, kl_coef: float = 0.0, **shared: Any) -> tuple[Any, Any]:
    """The on-policy method ``name`` (rloo | reinforce | ppo) and its params: the module whose sampler and
    objective run the policy phase (their reward is ``ctx.state["reward"]``). ``kl_coef`` is RLOO's and
    REINFORCE's KL penalty; PPO keeps its own adaptive KL (``ppo``'s defaults)."""
    if name == "rloo":
        if shared.get("n", 2) < 2:  # RLOOParams declares n >= 2, checked where --set gives it; here n is ours
            raise ValueError(f"rloo needs n >= 2 samples per prompt (a leave-one-out baseline), got n={shared['n']}")
        return rloo, rloo.RLOOParams(**shared, kl_coef=kl_coef)
    if name == "reinforce":
        return reinforce, reinforce.ReinforceParams(**shared, kl_coef=kl_coef)
    if name == "ppo":
        return ppo, ppo.PPOParams(**shared)
    raise ValueError(f"unknown policy-gradient method {name!r}; use rloo, reinforce or ppo")


def value_head(model: Any, params: Any) -> Any:
    """``MethodSpec.modules``: PPO's value head when the policy phase is PPO, else nothing."""
    return ppo.make_value_head(model, params) if params.pg == "ppo" else None


def _pg(p: AdversarialParams) -> tuple[Any, Any]:
    return policy_gradient(p.pg, kl_coef=p.kl_coef, **p.sampling())


def train_discriminator(ctx: RoundContext) -> None:
    """``on_round_start``: fit the discriminator (demonstrations vs fresh policy samples); record accuracy."""
    p: AdversarialParams = ctx.params
    disc: Discriminator | None = ctx.state.get("discriminator")
    if disc is None:
        disc = Discriminator.from_lm(ctx.policy, form=p.form, token_level=p.level == "token")
        ctx.state["discriminator"] = disc
    demos = list(ctx.data.demonstrations())
    prompts = list(ctx.data.prompts())
    outs = ctx.policy.generate(
        prompts, n=p.d_samples, temperature=p.temperature,
        max_new_tokens=response_length(ctx, p.max_new_tokens),
        seed=derive_seed(ctx.seed, ctx.round, salt=500_009),  # not the policy phase's samples
    )
    samples = [c.as_sequence() for cs in outs for c in cs]
    before = disc.accuracy(demos, samples)
    fit = disc.fit([(d, 1.0) for d in demos] + [(s, 0.0) for s in samples], steps=p.d_steps, lr=p.d_lr,
                   batch_size=p.d_batch_size, seed=derive_seed(ctx.seed, ctx.round))
    record = {"round": ctx.round, "d_accuracy_before": before, "d_accuracy": disc.accuracy(demos, samples),
              "d_loss": fit["d_loss"]}
    ctx.state.setdefault(HISTORY, []).append(record)
    ctx.metrics.update({k: float(v) for k, v in record.items() if k != "round"})
    ctx.state["reward"] = disc


def sampler(ctx: RoundContext) -> list[Row]:
    p: AdversarialParams = ctx.params
    module, params = _pg(p)
    rows = module.sampler(dataclasses.replace(ctx, params=params))
    acc = ctx.state[HISTORY][-1]["d_accuracy"]
    return [Row(r.seqs, {**r.values, "d_accuracy": acc}) for r in rows]


def objective(batch: LogProbBatch, params: AdversarialParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module, pg_params = _pg(params)
    loss, metrics = module.objective(batch, pg_params)
    return loss, {**metrics, "d_accuracy": batch.values["d_accuracy"].mean()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``adversarial``."""
    register(
        MethodSpec(
            name="adversarial",
            family="imitation",
            description="Adversarial imitation: policy gradient on a discriminator's reward (demonstrations "
            "vs policy samples; AIRL reverse-KL or GAIL JS form; sequence or token level)",
            paper=PAPER,
            sampler=sampler,
            objective=objective,
            params=AdversarialParams,
            needs=frozenset({DEMONSTRATIONS}),
            reference="initial",
            hooks=MethodHooks(on_round_start=train_discriminator),
            needs_hidden=True,  # PPO's value head reads hidden states (unused by rloo / reinforce)
            modules=value_head,
            train_defaults={**ON_POLICY_TRAIN_DEFAULTS, "rounds": 20, "steps": 4},  # Adam, batch 100, lr 1e-3
            real_train_defaults={"lr": 1e-6},  # its policy rounds are RL: PPO (Ouyang et al. / Stiennon et al.): 1e-6
        )
    )
