"""IRL reward model from demonstrations ("Init-SFT RM"), then best-of-n or RL on it.

Paper: Sun & van der Schaar, "Inverse-RLignment: Inverse Reinforcement Learning from Demonstrations for
LLM Alignment" (arXiv 2405.15624), after Sun 2024 (arXiv 2403.12017). No official code exists.

**The reward model.** A discriminator D = sigmoid(f(x, y)) trained with BCE, reward = the logit f:

- ``rm=init-sft`` (the paper's): positives = samples of pi_SFT (the policy after SFT on the
  demonstrations), negatives = samples of pi_init (before SFT), on the same prompts. Both sides are
  model samples, so the RM cannot key on the demonstrator's style; it extrapolates the direction SFT
  moved in;
- ``rm=init-demo`` (demonstrations vs pi_init) and ``rm=sft-demo`` (demonstrations vs pi_SFT), the
  alternatives the paper argues against (heterogeneous; SFT-Demo the most prone to reward hacking);
- ``rm=closed-form``: the Bayes-optimal Init-SFT logit log pi_SFT(y|x) - log pi_init(y|x) (a
  reviewer's observation), a free baseline with no fitting.

**Round 0** (``on_round_start``, once; its products live in ``ctx.state`` and survive resumes):
(a) SFT a copy of the policy on the demonstrations with the harness's own trainer and the ``sft``
method (``sft_steps`` steps, otherwise the trainer's defaults, so pi_SFT equals what ``harness run
--method sft`` trains at the same seed); (b) sample ``rm_samples`` responses per prompt from pi_SFT and
pi_init (temperature 1); (c) fit the discriminator (a copy of pi_init plus a linear head on the last
token's state, :class:`harness.training.divergence.Discriminator`) and record its training accuracy and the
ranking AUC of FRESH pi_SFT vs pi_init samples (``ctx.state["irl/fit"]``); (d) set
``ctx.state["reward"]`` to it, so every reward-reading sampler uses it; (e) with ``init_from_sft``
(default) load pi_SFT into the policy and the reference: best-of-n then selects among pi_SFT samples
(as in the paper) and the RL KL penalty is to pi_SFT (as in RLHF).

**Policy rounds** (``use``) reuse the on-policy methods: ``bon`` = iterated best-of-n / filtered BC on
the RM's top pick of ``n`` samples (``best-of-n``'s sampler and loss), ``rloo`` = RLOO on the RM's
reward (``rloo``'s; the paper proposes PPO but ran none).

**Keeping the RM.** A cell with a run folder saves the fitted discriminator into ``<cell folder>/reward_model``
(``train.save_reward_model``, on by default; not for ``rm=closed-form``): a suite trains any on-policy method on
it with ``reward = "irl:<that folder>"`` (:mod:`harness.training.irl_reward`), scoring exactly as it did here.

**Choices (the paper gives no sizes).** Defaults ours for the tiny didactic runs: sft_steps 50 (the
``sft`` method's default), rm_samples 50 per prompt, rm_steps 200 at lr 1e-3 (Adam, balanced batches of
32; with 10 samples x 100 steps the held-out AUC was 0.78 instead of 0.90), n = 10; policy rounds with
the on-policy methods' Adam at a constant lr 1e-3, 3 rounds x 4 steps (few: iterated filtered BC on a
fixed RM over-optimises it). For ``use=rloo``/``ppo`` raise ``rounds`` (e.g. 10; ppo: ``steps=15``,
its own default). ``needs_hidden`` is on for PPO's value head (idle otherwise). LoRA training is
refused with ``init_from_sft`` (the reference would be the base weights).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any, Literal

import torch

from alignment_harness_plugins.methods import best_of_n, ppo, sft
from alignment_harness_plugins.methods.adversarial import policy_gradient
from harness import (
    DEMONSTRATIONS,
    Completion,
    HarnessError,
    LogProbBatch,
    MethodHooks,
    MethodSpec,
    Prompt,
    RoundContext,
    Row,
    Sequence,
    derive_seed,
    hookimpl,
    param,
)
from harness.divergence import Discriminator, ranking_auc
from harness.divergence import portable as portable_model
from harness.divergence import rebuild as rebuild_model
from harness.lm import LM, HFEngine, sequence_logprobs
from harness.pg import ON_POLICY_TRAIN_DEFAULTS, RolloutParams, response_length

PAPER = "Sun & van der Schaar 2024, arXiv 2405.15624 (Inverse-RLignment); Sun 2024, arXiv 2403.12017"
SFT_SPEC = MethodSpec(name="sft", description="SFT of the IRL-RM's pi_SFT", paper=sft.__doc__ or "",
                      sampler=sft.sampler, objective=sft.objective, params=sft.SFTParams, reference="none")


@dataclass(frozen=True)
class IRLRMParams(RolloutParams):
    n: int = param(10, "samples per prompt per policy round (best-of-n N / RLOO group)", ge=1)
    temperature: float = param(1.0, "sampling temperature (RM data and policy rounds)", ge=0)
    rm: Literal["init-sft", "init-demo", "sft-demo", "closed-form"] = param(
        "init-sft", "positives vs negatives: init-sft (paper) | init-demo | sft-demo | closed-form")
    use: Literal["bon", "rloo", "ppo"] = param("bon", "policy rounds on the RM: bon (filtered BC), rloo, ppo")
    kl_coef: float = param(0.0, "rloo: sequence KL(pi || pi_ref) penalty (ppo: its own adaptive KL)")
    init_from_sft: bool = param(True, "start the policy (and reference) from pi_SFT")
    sft_steps: int = param(50, "SFT steps of pi_SFT (the sft method's default)")
    rm_samples: int = param(50, "samples per prompt from each of pi_SFT and pi_init for the RM")
    rm_steps: int = param(200, "discriminator Adam steps")
    rm_lr: float = param(1e-3, "discriminator learning rate")
    rm_batch_size: int = param(32, "discriminator batch (half positives, half negatives)")


class ClosedFormReward:
    """``log pi_SFT(y|x) - log pi_init(y|x)`` (summed over tokens): the Bayes-optimal Init-SFT logit."""

    def __init__(self, sft_model: Any, init_model: Any, pad_id: int) -> None:
        self.sft, self.init, self.pad_id = sft_model.eval(), init_model.eval(), int(pad_id)

    @torch.no_grad()
    def batch(self, prompts: Seq[Prompt], completions: Seq[Completion], chunk: int = 64) -> list[float]:
        seqs = [Sequence(p, c.ids) for p, c in zip(prompts, completions, strict=True)]
        out: list[float] = []
        for start in range(0, len(seqs), chunk):
            part = seqs[start : start + chunk]
            diff = (sequence_logprobs(self.sft, part, pad_id=self.pad_id).sum()
                    - sequence_logprobs(self.init, part, pad_id=self.pad_id).sum())
            out += diff.float().cpu().tolist()
        return out

    def __call__(self, prompt: Prompt, completion: Completion) -> float:
        return self.batch([prompt], [completion])[0]

    def __getstate__(self) -> dict[str, Any]:
        return {"sft": portable_model(self.sft), "init": portable_model(self.init), "pad_id": self.pad_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(rebuild_model(state["sft"]), rebuild_model(state["init"]), state["pad_id"])


def train_sft_copy(ctx: RoundContext, steps: int) -> LM:
    """pi_SFT: a copy of the policy trained with the ``sft`` method by the harness's trainer."""
    from harness.lm import TrainConfig, Trainer

    model = copy.deepcopy(ctx.policy.model)
    tokenizer = ctx.policy.tokenizer
    lm = LM(model, tokenizer, HFEngine(model, tokenizer), name="pi_sft")
    trainer = Trainer(method=SFT_SPEC, method_params=sft.SFTParams(), cfg=TrainConfig(steps=steps), policy=lm,
                      data=ctx.data, seed=ctx.seed, engine_factory=lambda m: HFEngine(m, tokenizer),
                      progress=False)
    trainer.train_round(0)
    model.eval()
    return lm


def _samples(lm: LM, prompts: list[Prompt], p: IRLRMParams, ctx: RoundContext, seed: int) -> list[Sequence]:
    length = response_length(ctx, p.max_new_tokens)
    outs = lm.generate(prompts, n=p.rm_samples, temperature=p.temperature, max_new_tokens=length, seed=seed)
    return [c.as_sequence() for cs in outs for c in cs if c.ids]


def fit_reward_model(ctx: RoundContext) -> None:
    """``on_round_start``: build pi_SFT, fit the RM, make it the reward (once, in round 0)."""
    p: IRLRMParams = ctx.params
    if "irl/fit" in ctx.state:
        return
    if p.init_from_sft and getattr(ctx.train, "lora", False):
        raise HarnessError("irl-rm: init_from_sft needs full weights; set lora=false or init_from_sft=false")
    pi_sft = train_sft_copy(ctx, p.sft_steps)
    prompts = list(ctx.data.prompts())
    init_s, sft_s = (_samples(lm, prompts, p, ctx, derive_seed(ctx.seed, salt=k))
                     for k, lm in ((1, ctx.policy), (2, pi_sft)))
    demos = list(ctx.data.demonstrations())
    fit: dict[str, float] = {}
    if p.rm == "closed-form":
        rm: Any = ClosedFormReward(pi_sft.model, copy.deepcopy(ctx.policy.model).eval(), ctx.policy.pad_id)
    else:
        sides = {"init-sft": (sft_s, init_s), "init-demo": (demos, init_s), "sft-demo": (demos, sft_s)}
        pos, neg = sides[p.rm]
        rm = Discriminator.from_lm(ctx.policy)
        fit = rm.fit([(s, 1.0) for s in pos] + [(s, 0.0) for s in neg], steps=p.rm_steps, lr=p.rm_lr,
                     batch_size=p.rm_batch_size, seed=ctx.seed)
        fit["rm_train_accuracy"] = rm.accuracy(pos, neg)
    # Held out: fresh samples of both policies, ranked by the RM (the paper's premise: SFT above init).
    fresh_init = _samples(ctx.policy, prompts, p, ctx, derive_seed(ctx.seed, salt=3))
    fresh_sft = _samples(pi_sft, prompts, p, ctx, derive_seed(ctx.seed, salt=4))
    scores = rm.batch([s.prompt for s in fresh_sft + fresh_init],
                      [Completion(s.prompt, s.response, "") for s in fresh_sft + fresh_init])
    fit["rm_heldout_auc"] = ranking_auc(scores[: len(fresh_sft)], scores[len(fresh_sft) :])
    ctx.state["irl/fit"] = fit
    ctx.metrics.update(fit)
    ctx.state["reward"] = rm
    if p.init_from_sft:
        state = pi_sft.model.state_dict()
        ctx.policy.model.load_state_dict(state)
        if ctx.reference is not None and ctx.reference.model is not ctx.policy.model:
            ctx.reference.model.load_state_dict(state)


def _pg(p: IRLRMParams) -> tuple[Any, Any]:
    if p.use == "bon":
        return best_of_n, best_of_n.BestOfNParams(**p.sampling())
    return policy_gradient(p.use, kl_coef=p.kl_coef, **p.sampling())


def value_head(model: Any, params: IRLRMParams) -> Any:
    """``MethodSpec.modules``: PPO's value head when ``use=ppo``, else nothing."""
    return ppo.make_value_head(model, params) if params.use == "ppo" else None


def sampler(ctx: RoundContext) -> list[Row]:
    module, params = _pg(ctx.params)
    rows = module.sampler(dataclasses.replace(ctx, params=params))
    auc = ctx.state["irl/fit"]["rm_heldout_auc"]
    return [Row(r.seqs, {**r.values, "rm_heldout_auc": auc}) for r in rows]


def objective(batch: LogProbBatch, params: IRLRMParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module, pg_params = _pg(params)
    loss, metrics = module.objective(batch, pg_params)
    return loss, {**metrics, "rm_heldout_auc": batch.values["rm_heldout_auc"].mean()}


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``irl-rm``."""
    register(
        MethodSpec(
            name="irl-rm",
            family="imitation",
            description="IRL reward model from demonstrations (pi_SFT vs pi_init discriminator, or the "
            "closed form), then best-of-n filtered BC, RLOO or PPO on it",
            paper=PAPER,
            sampler=sampler,
            objective=objective,
            params=IRLRMParams,
            needs=frozenset({DEMONSTRATIONS}),
            reference="initial",
            hooks=MethodHooks(on_round_start=fit_reward_model),
            needs_hidden=True,  # PPO's value head reads hidden states (unused by bon / rloo)
            modules=value_head,
            train_defaults={**ON_POLICY_TRAIN_DEFAULTS, "rounds": 3, "steps": 4},  # Adam, batch 100, lr 1e-3
            real_train_defaults={"lr": 1e-6},  # its policy rounds are RL: PPO (Ouyang et al. / Stiennon et al.): 1e-6
        )
    )
