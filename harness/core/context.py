"""The contexts the host hands to plugins: for data, warm starts, evaluation and training rounds."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.core.data import Completion, DataCopy, Feedback, Pair, Prompt, Sequence
from harness.core.digest import digest
from harness.core.errors import HarnessError

if TYPE_CHECKING:
    from harness.models.lm import LM
    from harness.models.text import PromptEncoder


@dataclass
class DataContext:
    """Handed to ``BenchmarkSpec.data(kind, ctx)``: the benchmark's params, a prompt encoder, a seed."""

    params: Any
    encoder: PromptEncoder
    seed: int
    split: str = "train"


@dataclass
class WarmStartContext:
    """Handed to ``BenchmarkSpec.warm_start(ctx)``: prepare ``lm.model`` in place before training."""

    lm: LM
    params: Any
    seed: int
    progress: Callable[[str], None] = lambda _msg: None


@dataclass
class EvalContext:
    """Handed to ``BenchmarkSpec.evaluate(ctx)``.

    ``engine.generate(...)`` produces completions; ``lm`` scores token log-probs of the policy
    (``lm.logprobs(seqs)``, ``lm.next_token_logprobs(prompts)``); ``limit`` caps the item count.
    ``report(done, total, what="")`` shows items done of total with an ETA (call it after each batch;
    ``what`` names a second phase, e.g. ``"judging"`` or ``"sandbox"``); ``progress(msg)`` logs a line.
    """

    engine: Any
    lm: LM
    encoder: PromptEncoder
    params: Any
    seed: int
    limit: int | None = None
    reference: LM | None = None
    progress: Callable[[str], None] = lambda _msg: None
    report: Callable[..., None] = lambda done, total=None, what="": None


@dataclass
class EvalResult:
    """Aggregated metrics (name -> value), per-item records (dicts stored as they are) and, for a benchmark
    with a data set, which copy of it was read (``data``: recorded with the evaluation, see :class:`DataCopy`).

    Each record should carry ``item_id``: a string naming the item it scores, the same in every cell that
    evaluates that item (the benchmark's own id, e.g. HumanEval's ``task_id``, or :func:`item_id` of the
    item's content where the benchmark has none). The leaderboard pairs two methods item by item on it."""

    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)
    data: DataCopy | None = None


def item_id(*content: Any) -> str:
    """A stable id for an item with no natural one: a short hash of its content (JSON-serialisable parts,
    e.g. the question text), the same in every process and cell."""
    return digest(content, 16)


@dataclass
class TrainingData:
    """A benchmark's training data, loaded lazily once per cell and cached."""

    loader: Callable[[str], list[Any]]
    reward_fn: Callable[..., float] | None
    provides: frozenset[str]
    _cache: dict[str, list[Any]] = field(default_factory=dict)

    def _get(self, kind: str) -> list[Any]:
        if kind == "feedback" and kind not in self.provides and "preferences" in self.provides:
            from harness.core.data import unpair

            self._cache.setdefault(kind, unpair(self._get("preferences")))
        if kind not in self.provides and kind not in self._cache:
            raise HarnessError(f"this benchmark provides no {kind}; it provides: {', '.join(sorted(self.provides))}")
        if kind not in self._cache:
            self._cache[kind] = self.loader(kind)
        return self._cache[kind]

    def demonstrations(self) -> list[Sequence]:
        return self._get("demonstrations")

    def preferences(self) -> list[Pair]:
        return self._get("preferences")

    def feedback(self) -> list[Feedback]:
        """Unpaired feedback: the source's own, else its preference pairs unpaired (chosen desirable)."""
        return self._get("feedback")

    def prompts(self) -> list[Prompt]:
        if "prompts" in self.provides:
            return self._get("prompts")
        # Any benchmark with demonstrations or pairs also gives their prompts.
        for kind, pick in (("demonstrations", lambda s: s.prompt), ("preferences", lambda p: p.prompt)):
            if kind in self.provides:
                return [pick(x) for x in self._get(kind)]
        raise HarnessError(f"this benchmark provides no prompts; it provides: {', '.join(sorted(self.provides))}")

    def reward(self, prompt: Prompt, completion: Completion) -> float:
        if self.reward_fn is None:
            raise HarnessError("this benchmark provides no reward; choose a benchmark that does")
        return float(self.reward_fn(prompt, completion))


@dataclass
class RoundContext:
    """Handed to a method's sampler and hooks for one training round.

    ``policy`` is the model being trained (generate from it for on-policy data); ``reference`` the
    frozen reference (``None`` when the method uses none). ``state`` persists across rounds (running
    baselines, a discriminator, a reward model). ``rng`` is seeded from (seed, round). ``cache`` (a
    :class:`harness.core.cache.CellCache`, or None) is what the host's samplers generate through, so cells
    that share a model reuse its samples; plugins need not touch it.
    """

    round: int
    rounds: int
    seed: int
    params: Any
    data: TrainingData
    policy: LM
    reference: LM | None
    rng: random.Random
    state: dict[str, Any]
    train: Any = None
    metrics: dict[str, float] = field(default_factory=dict)
    cache: Any = None

    def reward(self, prompt: Prompt, completion: Completion) -> float:
        """The sequence-level reward used by on-policy methods: the benchmark's own unless a method overrides ``state['reward']``."""
        override = self.state.get("reward")
        value = override(prompt, completion) if override is not None else self.data.reward(prompt, completion)
        # A dense (per-token) reward counts as its sum where a sequence-level reward is needed.
        return float(sum(value)) if isinstance(value, (list, tuple)) else float(value)
