"""One sweep cell end to end: load, warm-start, train round by round, evaluate, record.

``run_cell`` is what ``harness run`` calls and what the sweep's workers call for every cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import harness
from harness.context import DataContext, EvalContext, TrainingData, WarmStartContext
from harness.errors import HarnessError
from harness.lm import LM
from harness.models import LoadedModel, load_model
from harness.params import apply_overrides, as_dict
from harness.plugins import PluginHost
from harness.registry import BenchmarkSpec, MethodSpec
from harness.train import TrainConfig, Trainer


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
    engine: str = "hf"
    dtype: str = "float32"
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_benchmarks"] = list(self.eval_benchmarks)
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

    def resolved_dict(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "method": self.method.name,
            "benchmark": self.benchmark.name,
            "benchmark_version": self.benchmark.version,
            "seed": self.config.seed,
            "method_params": as_dict(self.method_params),
            "benchmark_params": as_dict(self.benchmark_params),
            "train": as_dict(self.train),
            "evals": [[b.name, b.version, as_dict(p)] for b, p in self.evals],
            "engine": self.config.engine,
            "dtype": self.config.dtype,
            "device": self.config.device,
        }

    @property
    def cell_id(self) -> str:
        """Hash of the resolved config and the versions of the code that runs it."""
        blob = json.dumps({"cell": self.resolved_dict(), "harness": harness.__version__}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve(config: CellConfig, host: PluginHost, *, where: str = "") -> ResolvedCell:
    """Look up the specs and apply every override strictly; raises one-line errors."""
    reg = host.registry
    pre = f"{where}: " if where else ""
    method = reg.method(config.method, where=where)
    bench = reg.benchmark(config.benchmark, where=where)
    missing = set(method.needs) - set(bench.provides)
    if missing:
        raise HarnessError(
            f"{pre}method '{method.name}' needs {', '.join(sorted(missing))}, which benchmark '{bench.name}' "
            f"does not provide (it provides {', '.join(sorted(bench.provides)) or 'nothing'}); pick another benchmark"
        )
    mparams = apply_overrides(method.params, config.method_params, where=f"{pre}method {method.name}",
                              from_string=True)
    bparams = apply_overrides(bench.params, config.benchmark_params, where=f"{pre}benchmark {bench.name}",
                              from_string=True)
    train = apply_overrides(TrainConfig, {**method.train_defaults, **config.train}, where=f"{pre}train",
                            from_string=True)
    evals = [(bench, bparams)]
    for name in config.eval_benchmarks:
        if name != bench.name:
            spec = reg.benchmark(name, where=where)
            evals.append((spec, spec.params()))
    if config.engine not in reg.specs["engine"]:
        reg.engine(config.engine, where=where)
    return ResolvedCell(config, method, bench, mparams, bparams, train, evals)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def cache_root() -> Path:
    import os

    return Path(os.environ.get("HARNESS_CACHE", "results/cache"))


def _warm_start(cell: ResolvedCell, lm: LM, log: Callable[[str], None]) -> str:
    """Run the benchmark's warm start once per (model, seed, benchmark params) and cache the weights."""
    bench = cell.benchmark
    if bench.warm_start is None:
        return "none"
    key = hashlib.sha256(
        json.dumps(
            [cell.config.model, cell.config.seed, bench.name, bench.version, as_dict(cell.benchmark_params),
             harness.__version__],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    path = cache_root() / "warmstart" / f"{key}.pt"
    if path.exists():
        lm.model.load_state_dict(torch.load(path, weights_only=True))
        return "hit"
    t0 = time.perf_counter()
    bench.warm_start(WarmStartContext(lm=lm, params=cell.benchmark_params, seed=cell.config.seed, progress=log))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(lm.model.state_dict(), tmp)
    tmp.replace(path)
    log(f"warm start for {bench.name}: {time.perf_counter() - t0:.1f} s (cached)")
    return "miss"


def evaluate(cell: ResolvedCell, lm: LM, engine: Any, reference: LM | None,
             log: Callable[[str], None]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    metrics: dict[str, float] = {}
    records: list[dict[str, Any]] = []
    for spec, params in cell.evals:
        res = spec.evaluate(
            EvalContext(engine=engine, lm=lm, encoder=lm.encoder, params=params, seed=cell.config.seed,
                        limit=getattr(params, "limit", None), reference=reference, progress=log)
        )
        for k, v in res.metrics.items():
            metrics[f"{spec.name}/{k}"] = float(v)
        records += [{"benchmark": spec.name, **r} for r in res.records]
    return metrics, records


def provenance(device: str) -> dict[str, Any]:
    import importlib.metadata as md
    import subprocess

    versions = {}
    for dist in ("alignment-harness", "torch", "transformers", "accelerate", "peft", "pluggy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "git_commit": commit, "device": device, "python": platform.python_version(),
            "host": platform.node()}


def _apply_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    )


def run_cell(
    cell: ResolvedCell,
    host: PluginHost,
    *,
    out_dir: Path | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate one cell; returns its record (also written to ``out_dir/record.json``)."""
    cfg = cell.config
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype, device=device)
    engine_spec = host.registry.engine(cfg.engine)
    if not engine_spec.available():
        raise HarnessError(f"engine '{cfg.engine}' is not available here: {engine_spec.install_hint}")

    def engine_for(model: Any) -> Any:
        return engine_spec.factory(LoadedModel(model, loaded.tokenizer, loaded.name, loaded.source))

    policy = LM(loaded.model, loaded.tokenizer, engine_for(loaded.model), name="policy")
    warm = _warm_start(cell, policy, log)
    if cell.train.lora:
        policy.model = _apply_lora(policy.model, cell.train)
        policy.engine = engine_for(policy.model)

    data_ctx = DataContext(params=cell.benchmark_params, encoder=policy.encoder, seed=cfg.seed)
    data = TrainingData(
        loader=lambda kind: cell.benchmark.data(kind, data_ctx),  # type: ignore[misc]
        reward_fn=cell.benchmark.reward,
        provides=cell.benchmark.provides,
    )
    modules = cell.method.modules(policy.model, cell.method_params) if cell.method.modules else None
    trainer = Trainer(
        method=cell.method, method_params=cell.method_params, cfg=cell.train, policy=policy, data=data,
        seed=cfg.seed, engine_factory=engine_for, checkpoint_dir=out_dir / "checkpoint" if out_dir else None,
        progress=progress, modules=modules,
    )
    rounds: list[dict[str, Any]] = []
    resumed = resume and trainer.try_resume()
    if resumed and out_dir is not None and (out_dir / "rounds.json").exists():
        rounds = json.loads((out_dir / "rounds.json").read_text())
        log(f"resumed after round {trainer.start_round} from {out_dir / 'checkpoint'}")
    timings = {"load_s": time.perf_counter() - t_start, "train_s": 0.0, "eval_s": 0.0}
    records: list[dict[str, Any]] = []

    def eval_round(label: int) -> None:
        t0 = time.perf_counter()
        metrics, recs = evaluate(cell, policy, policy.engine, trainer.reference.lm if trainer.reference else None,
                                 log)
        timings["eval_s"] += time.perf_counter() - t0
        rounds.append({"round": label, "metrics": metrics})
        records[:] = recs
        log(f"round {label}: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "rounds.json").write_text(json.dumps(rounds))

    if not rounds:
        eval_round(0)
    for rnd in range(trainer.start_round, cell.train.rounds):
        t0 = time.perf_counter()
        steps = trainer.train_round(rnd)
        timings["train_s"] += time.perf_counter() - t0
        last = steps[-1].metrics
        log(f"round {rnd + 1}/{cell.train.rounds} trained: " + "  ".join(
            f"{k}={v:.4g}" for k, v in last.items() if k not in ("lr", "step_s")))
        if cell.train.eval_every_round or rnd == cell.train.rounds - 1:
            eval_round(rnd + 1)
    timings["total_s"] = time.perf_counter() - t_start
    record = {
        "cell_id": cell.cell_id,
        "config": cell.resolved_dict(),
        "status": "done",
        "rounds": rounds,
        "final": rounds[-1]["metrics"] if rounds else {},
        "steps": [{"round": h.round, "step": h.step, **h.metrics} for h in trainer.history],
        "records": records,
        "timings": timings,
        "warm_start": warm,
        "provenance": provenance(device),
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "record.json").write_text(json.dumps(record, indent=1, default=str))
    return record


def evaluate_model(
    host: PluginHost,
    model: str,
    benchmarks: list[str],
    overrides: Mapping[str, Any],
    *,
    seed: int = 0,
    engine: str = "hf",
    dtype: str = "float32",
    device: str = "cpu",
    log: Callable[[str], None] = print,
    limit: int | None = None,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Evaluate a model as loaded (no training) on benchmarks; ``overrides`` apply to the first one.

    ``limit`` caps every benchmark's items; per-item records are appended to ``records`` if given.
    """
    seed_everything(seed)
    loaded = load_model(model, seed=seed, dtype=dtype, device=device)
    spec = host.registry.engine(engine)
    if not spec.available():
        raise HarnessError(f"engine '{engine}' is not available here: {spec.install_hint}")
    lm = LM(loaded.model, loaded.tokenizer, spec.factory(loaded))
    metrics: dict[str, float] = {}
    for i, name in enumerate(benchmarks):
        bench = host.registry.benchmark(name, where="--benchmark")
        params = apply_overrides(bench.params, overrides if i == 0 else {}, where=f"benchmark {name}",
                                 from_string=True)
        res = bench.evaluate(EvalContext(engine=lm.engine, lm=lm, encoder=lm.encoder, params=params, seed=seed,
                                         limit=limit if limit is not None else getattr(params, "limit", None),
                                         progress=log))
        metrics.update({f"{name}/{k}": float(v) for k, v in res.metrics.items()})
        if records is not None:
            records.extend({"benchmark": name, **r} for r in res.records)
    return metrics
