"""A cell: what defines it (:class:`CellConfig`), its specs and strictly checked parameters
(:class:`ResolvedCell`, whose hash is the cell's id) and :func:`resolve`, which gets from one to the other
with one-line errors. Running a cell is :mod:`harness.cell.run`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.core.data import implied_kinds
from harness.core.digest import digest
from harness.core.errors import HarnessError
from harness.core.params import apply_overrides, as_dict
from harness.core.plugins import PluginHost
from harness.core.registry import BenchmarkSpec, MethodSpec
from harness.core.version import __version__
from harness.training.trainer import TrainConfig


@dataclass(frozen=True)
class CellConfig:
    """Everything that defines one cell; its hash is the cell's identity."""

    model: str
    method: str
    benchmark: str
    seed: int = 0
    method_params: Mapping[str, Any] = field(default_factory=dict)
    benchmark_params: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    eval_benchmarks: tuple[str, ...] = ()
    eval_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per eval-only benchmark
    engine: str = "hf"
    dtype: str = "float32"
    device: str = "cpu"
    # True: `benchmark` names the training data only (a dataset, hf:..., a local file, or a benchmark's
    # training data) with `benchmark_params` its params, and the cell is evaluated on `eval_benchmarks` only.
    train_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_benchmarks"] = list(self.eval_benchmarks)
        d["eval_params"] = {b: dict(p) for b, p in self.eval_params.items()}
        return d


@dataclass
class ResolvedCell:
    """A cell's specs and fully resolved, strictly checked parameters."""

    config: CellConfig
    method: MethodSpec
    benchmark: BenchmarkSpec
    method_params: Any
    benchmark_params: Any
    train: TrainConfig
    evals: list[tuple[BenchmarkSpec, Any]]
    code: dict[str, str] = field(default_factory=dict)  # plugin -> hash of its source (harness.core.identity)

    def resolved_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "method": self.method.name,
            "benchmark": self.benchmark.name,
            "benchmark_version": self.benchmark.version,
            "seed": self.config.seed,
            "method_params": as_dict(self.method_params),
            "benchmark_params": as_dict(self.benchmark_params),
            "train": _train_dict(self.train),
            "evals": [[b.name, b.version, as_dict(p)] for b, p in self.evals],
            "engine": self.config.engine,
            "dtype": self.config.dtype,
            "device": self.config.device,
            **({"train_data": True} if self.config.train_data else {}),
        }

    @property
    def cell_id(self) -> str:
        """Hash of the resolved config, the harness version and the source of the plugins that run it (without
        the train settings that only change what is written: ``train.OUTPUT_ONLY``)."""
        from harness.training.trainer import IDENTITY_IF_SET, OUTPUT_ONLY

        d = self.resolved_dict()
        d["train"] = {k: v for k, v in d["train"].items()
                      if k not in OUTPUT_ONLY and not (k in IDENTITY_IF_SET and v == IDENTITY_IF_SET[k])}
        return digest({"cell": d, "harness": __version__, "code": self.code}, 16)


def _train_dict(train: Any) -> dict[str, Any]:
    """The train settings as recorded; ``eval_every_steps`` only when set (an output-only setting added later:
    at its default, configs and stored rows stay what they were)."""
    d = as_dict(train)
    if not d.get("eval_every_steps"):
        d.pop("eval_every_steps", None)
    return d


def resolve(config: CellConfig, host: PluginHost, *, where: str = "") -> ResolvedCell:
    """A cell from a config given whole (``harness run``, a worker reading its task): look up the specs and
    check every value once, strictly (:func:`harness.core.params.check_value`), then :func:`assemble`. A
    suite's cells do not come here: :mod:`harness.suite.plan` checks each suite value once and combines the
    typed values. Raises one-line errors."""
    from harness.cell.checks import check_seed

    reg = host.registry
    pre = f"{where}: " if where else ""
    method = reg.method(config.method, where=where)
    if config.train_data:
        from harness.training.datasets import training_source

        bench, bparams = training_source(config.benchmark, config.benchmark_params, reg, where=where)
        if not config.eval_benchmarks:
            raise HarnessError(f"{pre}a cell trained on '{config.benchmark}' needs at least one eval benchmark "
                               f"(eval = [...] or --eval NAME)")
    else:
        bench = reg.benchmark(config.benchmark, where=where)
    if problem := needs_problem(method, bench, config.train_data):
        raise HarnessError(pre + problem)
    from harness.training.defaults import method_defaults, train_defaults

    mparams = apply_overrides(method.params, {**method_defaults(method, config.model), **config.method_params},
                              where=f"{pre}method {method.name}", from_string=True)
    if not config.train_data:
        bparams = apply_overrides(bench.params, config.benchmark_params, where=f"{pre}benchmark {bench.name}",
                                  from_string=True)
    train = apply_overrides(TrainConfig, {**train_defaults(method, config.model),  # ranges: TrainConfig's param(ge=)
                                          **config.train}, where=f"{pre}train", from_string=True)
    check_seed(config.seed, f"{pre}seed")
    evals = [] if config.train_data else [(bench, bparams)]
    for name in config.eval_params:
        if name not in config.eval_benchmarks:
            raise HarnessError(f"{pre}eval_params for '{name}', which is not among the eval benchmarks "
                               f"({', '.join(config.eval_benchmarks) or 'none'}); add it to eval or drop its parameters")
    for name in config.eval_benchmarks:
        if name != bench.name or config.train_data:
            spec = reg.benchmark(name, where=where)
            evals.append((spec, apply_overrides(spec.params, config.eval_params.get(name, {}),
                                                where=f"{pre}eval benchmark {name}", from_string=True)))
    if config.engine not in reg.specs["engine"]:
        reg.engine(config.engine, where=where)
    return assemble(config, method, bench, mparams, bparams, train, evals, host, where=where)


def needs_problem(method: MethodSpec, bench: BenchmarkSpec, train_data: bool = False) -> str | None:
    """Why ``bench`` cannot feed ``method`` (a kind it needs and the data does not provide), or None."""
    what = "training data" if train_data else "benchmark"
    missing = set(method.needs) - implied_kinds(bench.provides)
    if not missing:
        return None
    return (f"method '{method.name}' needs {', '.join(sorted(missing))}, which {what} '{bench.name}' "
            f"does not provide (it provides {', '.join(sorted(bench.provides)) or 'nothing'}); pick another {what}"
            + ("; a reward comes from reward = \"rm:<model>\", \"irl:<folder>\" or \"benchmark:<name>\""
               if missing == {"reward"} else ""))


def assemble(config: CellConfig, method: MethodSpec, bench: BenchmarkSpec, method_params: Any,
             benchmark_params: Any, train: TrainConfig, evals: list[tuple[BenchmarkSpec, Any]], host: PluginHost,
             *, where: str = "") -> ResolvedCell:
    """The cell from values already typed and checked one by one: what only their combination can break
    (``save_model='adapters'`` without LoRA) and the source hashes of the plugins that run it."""
    if train.save_model == "adapters" and not train.lora:
        raise HarnessError(f"{where + ': ' if where else ''}train.save_model='adapters' needs train.lora=true; use "
                           "save_model='merged' to save the whole model")
    from harness.core.identity import participants, plugin_code

    code = plugin_code(host, participants(host, method.name, [b.name for b, _ in evals], config.engine,
                                          config.benchmark if config.train_data else None))
    return ResolvedCell(config, method, bench, method_params, benchmark_params, train, evals, code)
