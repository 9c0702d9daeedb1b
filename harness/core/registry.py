"""What plugins register (method, benchmark, engine and dataset specs) and the registry that checks it.

Plugins call ``register(spec)`` from their hooks; the registry checks the type, refuses a name taken
by another plugin (naming both), and remembers which plugin registered what.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.core.data import DATA_KINDS
from harness.core.errors import HarnessError, unknown_name
from harness.core.params import NoParams, param

if TYPE_CHECKING:
    from harness.core.context import EvalContext, EvalResult, RoundContext, WarmStartContext
    from harness.core.data import Row
    from harness.models.logprobs import LogProbBatch


@dataclass(frozen=True)
class MethodHooks:
    """Optional callbacks around the trainer loop; each receives the round's context."""

    on_round_start: Callable[[RoundContext], None] | None = None
    on_step_end: Callable[[RoundContext, int, dict[str, float]], None] | None = None
    on_round_end: Callable[[RoundContext], None] | None = None


METHOD_FAMILIES = ("supervised", "preference", "unpaired-feedback", "on-policy", "imitation")
"""Conventional ``MethodSpec.family`` values: maximum likelihood on given data (``supervised``), offline
pairwise preference losses (``preference``), per-response good/bad labels (``unpaired-feedback``: KTO),
methods that sample the current policy and score it with a reward (``on-policy``), and learning from
demonstrations against self-generated or adversarial samples (``imitation``)."""


@dataclass(frozen=True)
class MethodSpec:
    """An alignment method: where its data comes from and what loss it minimises.

    - ``sampler(ctx) -> list[Row]`` builds one round's training set (see :mod:`harness.training.samplers`).
    - ``objective(batch, params) -> (loss, metrics)`` is a pure function of log-prob tensors; ``loss``
      has one value per row (shape ``[B]``; a 0-d batch mean is accepted) and carries a gradient;
      metrics are floats or one-element tensors. Checked at the first step (:mod:`harness.core.contract`).
    - ``needs``: data kinds the benchmark must provide (``harness.core.data.DATA_KINDS``).
    - ``reference``: ``"initial"`` (frozen copy of the starting policy), ``"round"`` (reset to the
      latest policy at each round's start: SPIN, GSIL) or ``"none"``.
    - ``train_defaults``: trainer settings this method prefers (e.g. ``{"lr": 1e-3}``); the suite
      file and ``--set`` override them. They are the toy's, tuned on ``tiny:`` models.
    - ``real_train_defaults``: trainer settings from the method's paper, used over ``train_defaults`` when the
      cell's model is not ``tiny:`` (e.g. ``{"lr": 5e-7, "optimizer": "rmsprop"}``); a real model's ``lr`` is
      :data:`harness.training.defaults.GENERIC_REAL_LR` unless they set one. Cite the paper beside each value.
    - ``real_params``: method parameter defaults that differ from the params dataclass's for a real (non-``tiny:``)
      model (online DPO: ``{"beta": 0.1}``); the suite file and ``--set`` still override them.
    - ``modules(model, params) -> torch.nn.Module``: extra trainable heads (value, reward) whose
      parameters join the optimizer; the objective sees them as ``batch.modules``. With
      ``needs_hidden`` the batch carries the hidden states and logits of response positions.
    - ``family``: what kind of method it is, for ``harness methods --family``; one of
      :data:`METHOD_FAMILIES` by convention (free text is accepted; "" shows as "-").
    """

    name: str
    description: str
    paper: str
    sampler: Callable[[RoundContext], list[Row]]
    objective: Callable[[LogProbBatch, Any], tuple[Any, Mapping[str, Any]]]
    params: type = NoParams
    needs: frozenset[str] = frozenset()
    reference: str = "initial"
    hooks: MethodHooks = field(default_factory=MethodHooks)
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    needs_hidden: bool = False
    modules: Callable[[Any, Any], Any] | None = None
    family: str = ""
    real_train_defaults: Mapping[str, Any] = field(default_factory=dict)
    real_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_common(self, "method")
        if not isinstance(self.family, str):
            raise TypeError(f"method '{self.name}': family must be a string, e.g. {METHOD_FAMILIES[0]!r}")
        if not callable(self.sampler) or not callable(self.objective):
            raise TypeError(f"method '{self.name}': sampler and objective must be callables")
        bad = set(self.needs) - set(DATA_KINDS)
        if bad:
            raise TypeError(f"method '{self.name}': unknown data kinds {sorted(bad)}; use {DATA_KINDS}")
        if self.reference not in ("initial", "round", "none"):
            raise TypeError(f"method '{self.name}': reference must be 'initial', 'round' or 'none'")


METRIC_ROLES = ("goal", "diagnostic")


@dataclass(frozen=True)
class MetricSpec:
    """How the leaderboard reads one metric (or a family of them) of a benchmark.

    - ``name``: the metric's name as the benchmark reports it (``expected_reward``), or an ``fnmatch``
      pattern over the part before an lm-eval style filter (``exact_match`` covers
      ``exact_match,strict-match``; ``*_stderr`` every standard error).
    - ``lower_is_better``: the direction of "better" (``kl_ref``, ``loss``: True).
    - ``role``: ``"goal"`` (ranked; counts in the average rank) or ``"diagnostic"`` (shown, not ranked:
      ``kl_ref``, ``entropy``, format compliance).
    - ``item``: where a per-item record holds this metric's value for that item, as a dotted path that may
      use ``{metric}`` (the full name), ``{name}`` (before the comma) and ``{filter}`` (after it), e.g.
      ``"correct.{filter}"``; None when the records carry no per-item value. The leaderboard pairs two
      methods item by item (a paired bootstrap) through it.
    """

    name: str
    lower_is_better: bool = False
    role: str = "goal"
    item: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"metric name must be a non-empty string, got {self.name!r}")
        if self.role not in METRIC_ROLES:
            raise TypeError(f"metric '{self.name}': role must be one of {METRIC_ROLES}, got {self.role!r}")

    def matches(self, metric: str) -> bool:
        """Whether this declaration covers ``metric`` (exactly, or by pattern on its name before a comma)."""
        import fnmatch

        return metric == self.name or fnmatch.fnmatchcase(metric.split(",", 1)[0], self.name)


def declared_metric(metrics: tuple[MetricSpec, ...], metric: str) -> MetricSpec | None:
    """The first declaration of ``metrics`` that covers ``metric`` (an exact name before a pattern)."""
    for m in metrics:
        if m.name == metric:
            return m
    return next((m for m in metrics if m.matches(metric)), None)


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark: items to evaluate on and, optionally, training data and a reward.

    - ``evaluate(ctx) -> EvalResult``: generate with ``ctx.engine`` (or score with ``ctx.lm``), score,
      aggregate into metrics; per-item records go into the results store.
    - ``data(kind, ctx)``: training data of a kind in ``provides`` (demonstrations -> list[Sequence],
      preferences -> list[Pair], prompts -> list[Prompt]).
    - ``reward(prompt, completion) -> float``: the benchmark's own reward (if ``"reward"`` in provides).
    - ``warm_start(ctx)``: optional preparation of the policy before training (cached by the host).
    - ``metrics``: :class:`MetricSpec` declarations (direction, goal or diagnostic, per-item field) that
      the leaderboard reads; a suite's ``[leaderboard]`` table overrides them.
    """

    name: str
    description: str
    paper: str
    evaluate: Callable[[EvalContext], EvalResult]
    params: type = NoParams
    version: str = "1"
    provides: frozenset[str] = frozenset()
    data: Callable[[str, Any], list[Any]] | None = None
    reward: Callable[..., float] | None = None
    warm_start: Callable[[WarmStartContext], None] | None = None
    metrics: tuple[MetricSpec, ...] = ()

    def __post_init__(self) -> None:
        _check_common(self, "benchmark")
        if not all(isinstance(m, MetricSpec) for m in self.metrics):
            raise TypeError(f"benchmark '{self.name}': metrics must be a tuple of harness.core.registry.MetricSpec")
        bad = set(self.provides) - set(DATA_KINDS)
        if bad:
            raise TypeError(f"benchmark '{self.name}': unknown data kinds {sorted(bad)}; use {DATA_KINDS}")
        if (set(self.provides) - {"reward"}) and self.data is None:
            raise TypeError(f"benchmark '{self.name}': provides data but has no data() function")
        if "reward" in self.provides and self.reward is None:
            raise TypeError(f"benchmark '{self.name}': provides 'reward' but has no reward() function")


@dataclass(frozen=True)
class EngineSpec:
    """A generation backend. ``factory(model, **options)`` returns an object with ``generate(...)``.

    ``available()`` says whether it can run here; when it can't, ``install_hint`` is shown.
    """

    name: str
    description: str
    factory: Callable[..., Any]
    available: Callable[[], bool] = lambda: True
    install_hint: str = ""
    paper: str = ""
    params: type = NoParams

    def __post_init__(self) -> None:
        _check_common(self, "engine")


# Roles a dataset's column mapping may name (``columns = {"prompt": "question"}``).
DATASET_ROLES = ("messages", "prompt", "completion", "chosen", "rejected", "system", "label")


@dataclass(frozen=True)
class DatasetParams:
    """What a suite's ``[data]`` table or ``--set data.k=v`` may change about a dataset, per cell."""

    path: str = param("", "a local file (JSON/JSONL/Parquet/CSV) or directory to load instead of the hub copy")
    split: str = param("", "the split to read (default: the dataset's own)")
    limit: int | None = param(None, "use only the first N rows (default: the dataset's own limit, else all)")
    columns: tuple[str, ...] = param((), "role=column pairs, e.g. prompt=question (roles: " + ", ".join(DATASET_ROLES) + ")")
    chat: bool | None = param(None, "plain-text prompts as a user turn of the chat template (default: the dataset's)")
    reward: str = param("", "reward for on-policy methods: rm:<hub id or path> | irl:<saved irl-rm folder> | "
                        "benchmark:<name> (default: none)")


@dataclass(frozen=True)
class DatasetSpec:
    """Training data: demonstrations, preference pairs and/or prompts, from the hub or a local file.

    - ``provides``: subset of ``demonstrations``, ``preferences``, ``prompts``, ``feedback`` (``reward`` comes from a
      suite's ``reward = ...``, see :mod:`harness.training.datasets`).
    - Loading: ``hub`` (a Hugging Face dataset id) with ``config``, ``data_dir`` and ``split``, or ``path`` (a local
      JSON/JSONL/Parquet/CSV file or a directory of them); ``--set data.path=...`` points any dataset at a
      local copy.
    - ``columns``: role -> column name (roles: ``messages``, ``prompt``, ``completion``, ``chosen``,
      ``rejected``, ``system``, ``label``); a role not mapped is read from the column of the same name.
    - ``splits``: a split per kind when they differ (UltraChat: ``{"demonstrations": "train_sft",
      "prompts": "train_gen"}``); ``split`` is the rest's.
    - ``transform(row) -> row``: optional, rewrites a raw row into the standard shapes (hh-rlhf's
      ``Human:``/``Assistant:`` transcripts into message lists).
    - ``chat``: plain-text prompts go through the chat template as one user turn (True), or raw (False,
      TRL's "standard" format). Message lists always go through the chat template.
    - ``version``: bump it when the data or its conversion changes (it is part of a cell's identity).
    - ``limit``: use only the first N rows by default (SPIN's UltraChat 50k).
    - ``offline_hint``: what to download for a local copy (shown when the hub cannot be reached).
    """

    name: str
    description: str
    provides: frozenset[str]
    hub: str = ""
    config: str | None = None
    data_dir: str | None = None
    split: str = "train"
    path: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)
    splits: Mapping[str, str] = field(default_factory=dict)
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    chat: bool = False
    version: str = "1"
    limit: int | None = None
    paper: str = ""
    offline_hint: str = ""
    params: type = DatasetParams

    def __post_init__(self) -> None:
        _check_common(self, "dataset")
        bad = set(self.provides) - {"demonstrations", "preferences", "prompts", "feedback"}
        if bad or not self.provides:
            raise TypeError(f"dataset '{self.name}': provides must be a non-empty subset of demonstrations, "
                            f"preferences, prompts, feedback; got {sorted(self.provides)}")
        if bool(self.hub) == bool(self.path):
            raise TypeError(f"dataset '{self.name}': give exactly one of hub (a dataset id) or path (a local file)")
        bad_roles = set(self.columns) - set(DATASET_ROLES)
        if bad_roles:
            raise TypeError(f"dataset '{self.name}': unknown column roles {sorted(bad_roles)}; use {DATASET_ROLES}")


def _check_common(spec: Any, kind: str) -> None:
    if not isinstance(spec.name, str) or not spec.name or spec.name != spec.name.strip():
        raise TypeError(f"{kind} name must be a non-empty string, got {spec.name!r}")
    if not dataclasses.is_dataclass(spec.params) or not spec.params.__dataclass_params__.frozen:
        raise TypeError(f"{kind} '{spec.name}': params must be a frozen dataclass")


KINDS = {"method": MethodSpec, "benchmark": BenchmarkSpec, "engine": EngineSpec, "dataset": DatasetSpec}


class Registry:
    """Names -> specs, per kind, with the plugin each came from."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self.origin: dict[tuple[str, str], str] = {}
        self.quarantined: dict[str, str] = {}  # broken installed plugin -> why it was skipped

    def forget(self, plugin: str) -> None:
        """Drop everything ``plugin`` registered (it was quarantined)."""
        for kind, name in [key for key, origin in self.origin.items() if origin == plugin]:
            del self.origin[(kind, name)]
            self.specs[kind].pop(name, None)

    def register_callback(self, kind: str, plugin: str) -> Callable[[Any], None]:
        """The ``register`` function handed to one plugin's ``register_<kind>s`` hook."""
        expected = KINDS[kind]

        def register(spec: Any) -> None:
            if not isinstance(spec, expected):
                raise HarnessError(
                    f"plugin '{plugin}': register_{kind}s passed {type(spec).__name__}; "
                    f"pass a harness.core.registry.{expected.__name__}"
                )
            taken = self.origin.get((kind, spec.name))
            if taken is not None:
                raise HarnessError(
                    f"{kind} '{spec.name}' is registered twice: by plugin '{taken}' and by plugin '{plugin}'; "
                    f"rename one, or leave one out with HARNESS_LOAD_PLUGINS"
                )
            self.specs[kind][spec.name] = spec
            self.origin[(kind, spec.name)] = plugin

        return register

    def get(self, kind: str, name: str, where: str = "") -> Any:
        try:
            return self.specs[kind][name]
        except KeyError:
            error = unknown_name(kind, name, self.specs[kind], where)
            if self.quarantined:
                error = type(error)(f"{error.message} (skipped as broken: plugin "
                                    f"{', '.join(repr(n) for n in sorted(self.quarantined))}; see its warning)")
            raise error from None

    def method(self, name: str, where: str = "") -> MethodSpec:
        return self.get("method", name, where)

    def benchmark(self, name: str, where: str = "") -> BenchmarkSpec:
        return self.get("benchmark", name, where)

    def engine(self, name: str, where: str = "") -> EngineSpec:
        return self.get("engine", name, where)

    def dataset(self, name: str, where: str = "") -> DatasetSpec:
        return self.get("dataset", name, where)

    def names_by_plugin(self, plugin: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for (kind, name), origin in sorted(self.origin.items()):
            if origin == plugin:
                out.setdefault(kind + "s", []).append(name)
        return out
