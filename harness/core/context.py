"""The contexts the host hands to plugins: for data, warm starts, evaluation and training rounds."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from collections.abc import Sequence as Seq
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

    :meth:`generate` produces completions (the engine's, in chunks, cut at stop strings, with progress);
    ``engine`` is the engine behind it; ``lm`` scores token log-probs of the policy (``lm.logprobs(seqs)``,
    ``lm.next_token_logprobs(prompts)``); ``limit`` caps the item count (the params' ``limit`` when not
    given). ``report(done, total, what="")`` shows items done of total with an ETA (``what`` names a second
    phase, e.g. ``"judging"`` or ``"sandbox"``); ``progress(msg)`` logs a line.
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
    _generated: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.limit is None:
            self.limit = getattr(self.params, "limit", None)
        check_limit(self.limit, "evaluation")  # once, for every benchmark

    def generate(
        self,
        prompts: Seq[Prompt],
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        stop: Seq[str] = (),
        seed: int | None = None,
        chunk: int | None = None,
        total: int | None = None,
        desc: str = "generate",
        note: Callable[[list[list[Completion]]], str] | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt, in prompt order: ``engine.generate(...)`` (``lm.generate`` when the
        context has no engine) on ``chunk`` prompts at a time (all at once when None), each call with the same
        ``seed`` (default: the evaluation's), greedy when ``temperature`` is 0. Each text is cut before the first
        of the ``stop`` strings (a no-op for engines that already cut; ids and ``finish_reason`` stay the
        engine's).

        Progress: the evaluation's bar shows the prompts answered through this method so far, of ``total``
        (default: those and this call's; give the whole evaluation's count when it generates in several calls),
        after each chunk; with several chunks a line ``{desc}: done/total items[, note(completions so far)]``
        is logged after each. A wrong count of completions from the engine is a one-line error naming ``desc``.
        """
        if self.engine is not None:
            generate = self.engine.generate
        elif self.lm is not None and getattr(self.lm, "engine", None) is not None:
            generate = self.lm.generate  # the policy's engine, in the handle's scope
        else:
            raise HarnessError(f"{desc}: generating needs a generation engine, and this evaluation has none")
        if chunk is not None and chunk < 1:
            raise HarnessError(f"{desc}: chunk must be at least 1, got {chunk}")
        prompts = list(prompts)
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        seed = self.seed if seed is None else seed
        size = chunk or max(1, len(prompts))
        start_count = self._generated
        total = start_count + len(prompts) if total is None else total
        self.report(start_count, total)  # the bar shows the total (and an ETA) from the start
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), size):
            part = prompts[start : start + size]
            got = generate(part, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                           stop=stop, seed=seed)
            if len(got) != len(part) or any(len(cs) != n for cs in got):
                raise HarnessError(f"{desc}: the engine returned the wrong number of completions "
                                   f"({len(got)} lists for {len(part)} prompts, {n} each expected)")
            out += [[_cut(c, stop) for c in cs] for cs in got]
            self._generated = start_count + len(out)
            self.report(self._generated, total)
            if len(prompts) > size:
                extra = f", {note(out)}" if note is not None else ""
                self.progress(f"{desc}: {len(out)}/{len(prompts)} items{extra}")
        return out


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


def check_limit(limit: int | None, where: str, key: str = "limit") -> None:
    """A limit on items must be positive (or None for all): else a one-line error. An :class:`EvalContext`'s
    ``limit`` is checked when the context is made; a benchmark need not check it again."""
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise HarnessError(f"{where}: {key} must be a positive number of items (or None for all), got {limit}")


def truncate_at_stop(text: str, stop: Seq[str]) -> str:
    """``text`` cut before the first occurrence of any of the ``stop`` strings (lm-eval's ``until``)."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def _cut(completion: Completion, stop: Seq[str]) -> Completion:
    text = truncate_at_stop(completion.text, stop)
    return completion if text == completion.text else dataclasses.replace(completion, text=text)


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
