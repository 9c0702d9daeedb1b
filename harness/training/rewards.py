"""The one reward interface of the harness, and its sources.

**Interface.** A reward is a plain callable ``RewardFn = (Prompt, Completion) -> float | list[float]``:

- a ``float`` is a sequence-level reward (given at the last response token);
- a ``list[float]`` is a dense, per-token reward, one value per response token (``token_rewards``
  pads/places it; ``sequence_reward`` sums it).

A *learned* reward additionally satisfies the small :class:`RewardModel` protocol: ``fit(...)`` then
``__call__``. A callable may also offer ``batch(prompts, completions) -> list[Reward]`` to score many
samples at once; :func:`score_all` uses it when present.

**Which reward a method uses.** A method that optimises a reward reads :func:`current_reward`: the
callable in ``ctx.state["reward"]`` if a method (or a hook) put one there, else the benchmark's own
reward (:func:`benchmark_reward`: didactic true reward, GSM8K correctness, tests passing...). Whatever
goes into ``ctx.state`` is saved with the trainer's checkpoints, so it must be picklable: no lambdas,
and no transformers model held directly after it has run a forward (transformers installs local hooks);
see ``BradleyTerryRewardModel.__getstate__`` for the pattern (class, config, state_dict).

**Sources** (the shared ``reward_source`` parameter, see :class:`RewardParams` and
:func:`prepare_reward`):

- ``"benchmark"``: the benchmark's reward;
- ``"bt"``: a :class:`BradleyTerryRewardModel` (a copy of the policy's backbone + a linear head on the
  last token's hidden state) fitted on the benchmark's preference pairs with ``-log sigmoid(r_w - r_l)``
  before the first policy round;
- ``"judge"``: a :class:`JudgeReward`, an LLM judge (any engine, e.g. an OpenAI-compatible endpoint)
  asked to rate each response; its rating is parsed into a float.

Other reward models (IRL, AVA) plug in the same way: an object with ``__call__`` (and ``fit``) put into
``ctx.state["reward"]``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from harness.core.data import Completion, Pair, Prompt, Sequence
from harness.core.errors import HarnessError
from harness.core.params import param

if TYPE_CHECKING:
    from harness.core.context import RoundContext
    from harness.models.lm import LM

Reward = float | list[float]
RewardFn = Callable[[Prompt, Completion], Reward]
"""``(prompt, completion) -> float`` (sequence-level) or ``list[float]`` (one reward per response token)."""


@runtime_checkable
class RewardModel(Protocol):
    """A learned reward: ``fit`` it on data, then call it like any :data:`RewardFn`."""

    def fit(self, data: Seq[Any], **kwargs: Any) -> dict[str, float]: ...

    def __call__(self, prompt: Prompt, completion: Completion) -> Reward: ...


# -- helpers on reward values ------------------------------------------------------------------------


def sequence_reward(reward: Reward) -> float:
    """The total reward of a response: the float itself, or the sum of a per-token list."""
    if isinstance(reward, (list, tuple)):
        return float(sum(float(r) for r in reward))
    return float(reward)


def token_rewards(reward: Reward, length: int) -> list[float]:
    """Per-token rewards of a response of ``length`` tokens.

    A scalar goes to the last token (zeros before it); a list is cut or zero-padded to ``length``.
    """
    if length < 1:
        raise ValueError("a response needs at least one token to carry a reward")
    if isinstance(reward, (list, tuple)):
        values = [float(r) for r in reward][:length]
        return values + [0.0] * (length - len(values))
    return [0.0] * (length - 1) + [float(reward)]


class ScalarReward:
    """A reward callable made sequence-level: dense (list) rewards are summed. Picklable."""

    def __init__(self, fn: RewardFn) -> None:
        self.fn = fn

    def __call__(self, prompt: Prompt, completion: Completion) -> float:
        return sequence_reward(self.fn(prompt, completion))


def score_all(fn: RewardFn, prompts: Seq[Prompt], completions: Seq[Completion]) -> list[Reward]:
    """``fn`` on every (prompt, completion), through ``fn.batch`` when the callable offers one."""
    batch = getattr(fn, "batch", None)
    if callable(batch):
        return list(batch(prompts, completions))
    return [fn(p, c) for p, c in zip(prompts, completions, strict=True)]


# -- sources -----------------------------------------------------------------------------------------


def benchmark_reward(ctx: RoundContext) -> RewardFn:
    """The benchmark's own reward function (raw: dense rewards stay lists)."""
    fn = ctx.data.reward_fn
    if fn is None:
        raise HarnessError("this benchmark provides no reward; choose one that does, or set reward_source")
    return fn


def current_reward(ctx: RoundContext) -> RewardFn:
    """The reward a method optimises: ``ctx.state["reward"]`` if set, else the benchmark's."""
    override = ctx.state.get("reward")
    return override if override is not None else benchmark_reward(ctx)


def bradley_terry_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair Bradley-Terry loss ``-log sigmoid(r_w - r_l)`` and its metrics (accuracy, margin)."""
    margin = r_w - r_l
    metrics = {"accuracy": (margin > 0).float().mean().detach(), "margin": margin.mean().detach()}
    return -F.logsigmoid(margin), metrics


class BradleyTerryRewardModel:
    """A scalar reward ``r(x, y) = w . h_last + b``: a causal LM backbone and a linear head.

    ``h_last`` is the final hidden state at the last token of prompt + response (the one that has
    read the whole response). :meth:`fit` trains backbone and head on preference pairs with
    :func:`bradley_terry_loss`; calling it scores under ``no_grad``.
    """

    def __init__(self, backbone: Any, pad_id: int) -> None:
        self.backbone = backbone
        self.pad_id = int(pad_id)
        hidden = backbone.config.hidden_size
        device = next(backbone.parameters()).device
        self.head = torch.nn.Linear(hidden, 1).to(device)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    @classmethod
    def from_lm(cls, lm: LM) -> BradleyTerryRewardModel:
        """A reward model on a frozen-in-time copy of ``lm``'s model (e.g. the starting policy); LoRA
        adapters, if any, are merged into the copy."""
        backbone = copy.deepcopy(lm.model)
        if hasattr(backbone, "merge_and_unload"):
            backbone = backbone.merge_and_unload()
        backbone.requires_grad_(True)
        return cls(backbone, lm.pad_id)

    # Pickling (trainer checkpoints save ctx.state): transformers models hold local hooks after a forward,
    # so the backbone travels as (class, config, state_dict) and is rebuilt on load.
    def __getstate__(self) -> dict[str, Any]:
        p = next(self.backbone.parameters())
        return {"cls": type(self.backbone), "config": self.backbone.config, "pad_id": self.pad_id,
                "backbone": self.backbone.state_dict(), "head": self.head.state_dict(),
                "dtype": p.dtype, "device": str(p.device)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        backbone = state["cls"](state["config"])
        backbone.load_state_dict(state["backbone"])
        self.__init__(backbone.to(device=state["device"], dtype=state["dtype"]).eval(), state["pad_id"])
        self.head.load_state_dict(state["head"])

    def scores(self, seqs: Seq[Sequence]) -> torch.Tensor:
        """``[N]`` rewards of the sequences (gradients flow; wrap in ``no_grad`` to score)."""
        device = next(self.backbone.parameters()).device
        rows = [list(s.prompt.ids) + list(s.response) for s in seqs]
        if any(not r for r in rows):
            raise ValueError("a sequence to score needs at least one token")
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, r in enumerate(rows):  # right-padded: position len-1 is the last real token
            ids[i, : len(r)] = torch.tensor(r)
            attn[i, : len(r)] = 1
        out = self.backbone(
            input_ids=ids.to(device), attention_mask=attn.to(device), output_hidden_states=True, use_cache=False
        )
        last = torch.tensor([len(r) - 1 for r in rows], device=device)
        hidden = out.hidden_states[-1][torch.arange(len(rows), device=device), last]
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.backbone.parameters(), *self.head.parameters()]

    def fit(
        self, data: Seq[Pair], *, steps: int = 200, lr: float = 1e-3, batch_size: int = 32, seed: int = 0
    ) -> dict[str, float]:
        """Fit on preference pairs (Adam, seeded minibatches); returns the last step's loss and accuracy."""
        if not data:
            raise HarnessError("the Bradley-Terry reward model needs preference pairs; the benchmark has none")
        params = self.parameters()
        opt = torch.optim.Adam(params, lr=lr)
        gen = torch.Generator().manual_seed(seed)
        was_training = self.backbone.training
        self.backbone.train()
        metrics: dict[str, float] = {}
        try:
            for _ in range(steps):
                idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=gen).tolist()
                pairs = [data[i] for i in idx]
                chosen = [Sequence(p.prompt, p.chosen) for p in pairs]
                rejected = [Sequence(p.prompt, p.rejected) for p in pairs]
                r = self.scores(chosen + rejected)
                loss, m = bradley_terry_loss(r[: len(pairs)], r[len(pairs) :])
                opt.zero_grad(set_to_none=True)
                loss.mean().backward()
                opt.step()
                metrics = {"rm_loss": float(loss.mean().detach()), **{f"rm_{k}": float(v) for k, v in m.items()}}
        finally:
            self.backbone.train(was_training)
        self.backbone.eval()
        return metrics

    @torch.no_grad()
    def batch(self, prompts: Seq[Prompt], completions: Seq[Completion], chunk: int = 64) -> list[float]:
        seqs = [Sequence(p, c.ids) for p, c in zip(prompts, completions, strict=True)]
        out: list[float] = []
        for start in range(0, len(seqs), chunk):
            out += self.scores(seqs[start : start + chunk]).float().cpu().tolist()
        return out

    def __call__(self, prompt: Prompt, completion: Completion) -> float:
        return self.batch([prompt], [completion])[0]


DEFAULT_JUDGE_TEMPLATE = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Rate the response on a scale of 1 to 10 by strictly following "
    'this format: "[[rating]]", for example: "Rating: [[5]]".\n\n'
    "[Question]\n{prompt}\n\n[The Start of Assistant's Answer]\n{response}\n[The End of Assistant's Answer]"
)


class JudgeReward:
    """An LLM judge as a reward: ``parse(engine's answer to template.format(prompt=..., response=...))``.

    ``engine`` is any generation engine (``harness.engines``: an OpenAI-compatible endpoint, a local
    HF model, ...); ``tokenizer`` builds prompt ids for local engines (``None`` for API engines).
    ``parse`` defaults to FastChat's ``[[rating]]`` parser (``-1.0`` when no rating is found).
    Decoding is greedy with a fixed seed.
    """

    def __init__(
        self,
        engine: Any,
        template: str = DEFAULT_JUDGE_TEMPLATE,
        parse: Callable[[str], float] | None = None,
        *,
        tokenizer: Any = None,
        max_new_tokens: int = 256,
    ) -> None:
        from harness.evaluation.judge import parse_rating

        self.engine = engine
        self.template = template
        self.parse = parse or parse_rating
        self.tokenizer = tokenizer
        self.max_new_tokens = int(max_new_tokens)
        self.settings: dict[str, Any] | None = None  # make_judge arguments, when built by from_settings

    @classmethod
    def from_settings(cls, engine: str, model: str | None, *, base_url: str | None = None, device: str = "cpu",
                      **kwargs: Any) -> JudgeReward:
        """A judge built with :func:`harness.evaluation.judge.make_judge`; it pickles as these settings (a local
        judge model is reloaded rather than pickled)."""
        from harness.evaluation.judge import make_judge

        judge = make_judge(engine, model, base_url=base_url, device=device)
        out = cls(judge.engine, tokenizer=judge.tokenizer, **kwargs)
        out.settings = {"engine": engine, "model": model, "base_url": base_url, "device": device}
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.settings is not None:
            state["engine"] = state["tokenizer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.engine is None and self.settings is not None:
            from harness.evaluation.judge import make_judge

            s = self.settings
            judge = make_judge(s["engine"], s["model"], base_url=s["base_url"], device=s["device"])
            self.engine, self.tokenizer = judge.engine, judge.tokenizer

    def message(self, prompt: Prompt, completion: Completion) -> str:
        return self.template.format(prompt=prompt.text, response=completion.text)

    def batch(self, prompts: Seq[Prompt], completions: Seq[Completion]) -> list[float]:
        from harness.evaluation.judge import chat_prompt

        asks = [
            chat_prompt(self.tokenizer, [{"role": "user", "content": self.message(p, c)}])
            for p, c in zip(prompts, completions, strict=True)
        ]
        if not asks:
            return []
        outs = self.engine.generate(asks, n=1, temperature=0.0, max_new_tokens=self.max_new_tokens, seed=0)
        return [float(self.parse(o[0].text)) for o in outs]

    def __call__(self, prompt: Prompt, completion: Completion) -> float:
        return self.batch([prompt], [completion])[0]


# -- the shared reward_source parameter --------------------------------------------------------------


@dataclass(frozen=True)
class RewardParams:
    """Where a reward-optimising method's reward comes from; methods' params inherit these fields."""

    reward_source: Literal["benchmark", "bt", "judge"] = param(
        "benchmark", "benchmark (its own reward) | bt (Bradley-Terry RM fitted on its pairs) | judge (LLM judge)"
    )
    rm_steps: int = param(200, "bt: Adam steps fitting the reward model before the first round")
    rm_lr: float = param(1e-3, "bt: learning rate of the reward model")
    rm_batch_size: int = param(32, "bt: pairs per reward-model step")
    judge_engine: str = param("openai", "judge: engine name (openai | hf | any registered engine)")
    judge_model: str | None = param(None, "judge: the judging model's name")
    judge_base_url: str | None = param(None, "judge: OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")


def make_reward(ctx: RoundContext, params: Any) -> RewardFn | None:
    """The reward callable ``params.reward_source`` asks for (``None`` for the benchmark's own)."""
    source = getattr(params, "reward_source", "benchmark")
    if source == "benchmark":
        return None
    if source == "bt":
        rm = BradleyTerryRewardModel.from_lm(ctx.policy)
        fit = rm.fit(
            ctx.data.preferences(), steps=params.rm_steps, lr=params.rm_lr,
            batch_size=params.rm_batch_size, seed=ctx.seed,
        )
        ctx.state["reward_fit"] = fit
        return rm
    if source == "judge":
        return JudgeReward.from_settings(params.judge_engine, params.judge_model, base_url=params.judge_base_url,
                                         device=str(ctx.policy.device))
    raise HarnessError(f"reward_source must be benchmark, bt or judge, got {source!r}")


def prepare_reward(ctx: RoundContext) -> None:
    """An ``on_round_start`` hook: build the reward of ``ctx.params.reward_source`` once, before the
    first round's sampling, into ``ctx.state["reward"]`` (kept across rounds and checkpoints)."""
    if "reward_ready" in ctx.state:
        return
    fn = make_reward(ctx, ctx.params)
    if fn is not None:
        ctx.state["reward"] = fn
    ctx.state["reward_ready"] = True


__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "BradleyTerryRewardModel",
    "JudgeReward",
    "Reward",
    "RewardFn",
    "RewardModel",
    "RewardParams",
    "ScalarReward",
    "benchmark_reward",
    "bradley_terry_loss",
    "current_reward",
    "make_reward",
    "prepare_reward",
    "score_all",
    "sequence_reward",
    "token_rewards",
]
