"""One sweep cell end to end: load, warm-start, train round by round, evaluate, record.

``run_cell`` is what ``harness run`` calls and what the sweep's workers call for every cell.

**Resume.** With an ``out_dir``, each round's end writes a checkpoint (``checkpoint/``) and each
evaluation ``records.json`` then ``rounds.json`` (atomically). A rerun resumes from the checkpoint; if
the process died between a round's checkpoint and its evaluation, the checkpointed weights are evaluated
first, so no round's evaluation is lost and the final metrics are the last round's. Evaluations run in a
forked RNG, so whether one is redone or reused never changes the training that follows.

**Cache.** The warm start, the reference log-probs and the generated samples go through the shared cache
(:mod:`harness.core.cache`); the cell's record says how many lookups hit (``record["cache"]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import harness
from harness.core.cache import Cache, describe_stats, model_identity, open_cache, stats_since, stats_snapshot
from harness.core.context import DataContext, EvalContext, TrainingData, WarmStartContext
from harness.core.errors import HarnessError
from harness.core.params import apply_overrides, as_dict
from harness.core.plugins import PluginHost
from harness.core.progress import CountingEngine, Items, phase
from harness.core.registry import BenchmarkSpec, MethodSpec
from harness.models.lm import LM
from harness.models.loading import LoadedModel, load_model
from harness.training.trainer import TrainConfig, Trainer


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
            "train": as_dict(self.train),
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
        from harness.training.trainer import OUTPUT_ONLY

        d = self.resolved_dict()
        d["train"] = {k: v for k, v in d["train"].items() if k not in OUTPUT_ONLY}
        blob = json.dumps({"cell": d, "harness": harness.__version__, "code": self.code}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve(config: CellConfig, host: PluginHost, *, where: str = "") -> ResolvedCell:
    """Look up the specs and apply every override strictly; raises one-line errors."""
    from harness.sweeps.checks import check_seed, check_train

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
    what = "training data" if config.train_data else "benchmark"
    missing = set(method.needs) - set(bench.provides)
    if missing:
        raise HarnessError(
            f"{pre}method '{method.name}' needs {', '.join(sorted(missing))}, which {what} '{bench.name}' "
            f"does not provide (it provides {', '.join(sorted(bench.provides)) or 'nothing'}); pick another {what}"
            + ("; a reward comes from reward = \"rm:<model>\" or \"benchmark:<name>\"" if missing == {"reward"} else "")
        )
    from harness.training.defaults import method_defaults, train_defaults

    mparams = apply_overrides(method.params, {**method_defaults(method.name, config.model), **config.method_params},
                              where=f"{pre}method {method.name}", from_string=True)
    if not config.train_data:
        bparams = apply_overrides(bench.params, config.benchmark_params, where=f"{pre}benchmark {bench.name}",
                                  from_string=True)
    train = apply_overrides(TrainConfig, {**train_defaults(method.name, method.train_defaults, config.model),
                                          **config.train}, where=f"{pre}train", from_string=True)
    check_train(train, f"{pre}train")  # ranges: positive steps and batch, rounds >= 0, lr > 0
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
    if train.save_model == "adapters" and not train.lora:
        raise HarnessError(f"{pre}train.save_model='adapters' needs train.lora=true; use save_model='merged' to save "
                           "the whole model")
    from harness.core.identity import participants, plugin_code

    code = plugin_code(host, participants(host, method.name, [b.name for b, _ in evals], config.engine,
                                          config.benchmark if config.train_data else None))
    return ResolvedCell(config, method, bench, mparams, bparams, train, evals, code)


def _loading(model: str) -> contextlib.AbstractContextManager[None]:
    """A progress phase for loading a real model (tiny: ones load in milliseconds)."""
    return contextlib.nullcontext() if model.startswith("tiny:") else phase(f"loading {model}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def cache_root() -> Path:
    from harness.core.cache import cache_root as root

    return root()


def warm_start_key(cell: ResolvedCell) -> str | None:
    """The identity of the cell's warm start (None: its benchmark has none)."""
    bench = cell.benchmark
    if bench.warm_start is None:
        return None
    return hashlib.sha256(
        json.dumps(
            [cell.config.model, cell.config.seed, bench.name, bench.version, as_dict(cell.benchmark_params),
             harness.__version__],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]


def initial_model_key(cell: ResolvedCell) -> str:
    """The identity of the cell's initial policy (what its initial reference is a copy of)."""
    cfg, train = cell.config, cell.train
    return model_identity(model=cfg.model, seed=cfg.seed, warm_start=warm_start_key(cell), dtype=cfg.dtype,
                          device=cfg.device, lora=[train.lora_r, train.lora_alpha] if train.lora else None)


def _warm_start(cell: ResolvedCell, lm: LM, log: Callable[[str], None], cache: Cache | None = None) -> str:
    """Run the benchmark's warm start once per (model, seed, benchmark params) and cache the weights.

    Returns ``hit`` (read from the cache), ``miss`` (run, and cached), ``off`` (run: the cache is off) or
    ``none`` (the benchmark has no warm start)."""
    bench = cell.benchmark
    key = warm_start_key(cell)
    if key is None:
        return "none"
    t0 = time.perf_counter()
    ran = []

    def run() -> dict[str, Any]:
        bench.warm_start(WarmStartContext(lm=lm, params=cell.benchmark_params, seed=cell.config.seed, progress=log))
        ran.append(True)
        return lm.model.state_dict()

    if cache is None:
        run()
        log(f"warm start for {bench.name}: {time.perf_counter() - t0:.1f} s (cache off)")
        return "off"
    state = cache.fetch("warmstart", key, ".pt", read=lambda p: torch.load(p, weights_only=True), compute=run,
                        write=lambda value, p: torch.save(value, p))
    if not ran:
        lm.model.load_state_dict(state)
        return "hit"
    log(f"warm start for {bench.name}: {time.perf_counter() - t0:.1f} s (cached)")
    return "miss"


@contextlib.contextmanager
def isolated_rng(device: str) -> Iterator[None]:
    """Run a block without touching the global RNGs (torch, CUDA, numpy, random)."""
    devices = [torch.cuda.current_device()] if device.startswith("cuda") and torch.cuda.is_available() else []
    py, npy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a kill never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def evaluate(cell: ResolvedCell, lm: LM, engine: Any, reference: LM | None,
             log: Callable[[str], None]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    metrics: dict[str, float] = {}
    records: list[dict[str, Any]] = []
    for spec, params in cell.evals:
        items = Items(f"eval {spec.name}")
        try:
            res = spec.evaluate(
                EvalContext(engine=CountingEngine(engine, items), lm=lm, encoder=lm.encoder, params=params,
                            seed=cell.config.seed, limit=getattr(params, "limit", None), reference=reference,
                            progress=log, report=items)
            )
        finally:
            items.close()
        for k, v in res.metrics.items():
            metrics[f"{spec.name}/{k}"] = float(v)
        records += [{"benchmark": spec.name, **r} for r in res.records]
    return metrics, records


def _code_state() -> tuple[str | None, bool | None]:
    """The git commit of the harness checkout and whether tracked files differ from it (None: not git)."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout if res.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return commit, (bool(status.strip()) if status is not None else None)


# Taken when this module is imported, i.e. when the code that runs cells is loaded: a sweep's workers
# fork from a server that imported it at the sweep's start, so a later commit does not relabel them.
_CODE_COMMIT, _CODE_DIRTY = _code_state()


def provenance(device: str) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for dist in ("alignment-harness", "torch", "transformers", "accelerate", "peft", "pluggy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    from harness.core.threads import describe as describe_threads

    return {"versions": versions, "git_commit": _CODE_COMMIT, "git_dirty": _CODE_DIRTY, "device": device,
            "python": platform.python_version(), "host": platform.node(), "threads": describe_threads()}


def _apply_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    )


def warm_engine(engine: Any, log: Callable[[str], None] | None = None) -> float:
    """Pay an engine's one-off costs before the cell's first generation (engines with a ``warm()`` method:
    the ``hf`` engine on CUDA sets up CUDA and records its decode graph, so the first call runs at warm
    speed; a no-op on a CPU). Returns the seconds spent."""
    warm = getattr(engine, "warm", None)
    if not callable(warm):
        return 0.0
    spent = float(warm() or 0.0)
    if spent and log is not None:
        log(f"engine warm-up: {spent:.2f} s")
    return spent


def run_cell(
    cell: ResolvedCell,
    host: PluginHost,
    *,
    out_dir: Path | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    cache: Cache | None | str = "auto",
    status: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one cell; returns its record (also written to ``out_dir/record.json``).

    ``cache``: a :class:`~harness.core.cache.Cache`, None (off) or ``"auto"`` (``$HARNESS_CACHE``).
    ``status`` gets the cell's progress as it goes: ``{"phase": "load" | "warm start" | "sampling" |
    "reference log-probs" | "train" | "eval", ...}``, with round, step and total steps while training (see :func:`harness.sweeps.executors.run_task`).
    """
    cfg = cell.config
    t_start = time.perf_counter()
    stats0 = stats_snapshot()
    if cache == "auto":
        cache = open_cache()
    assert not isinstance(cache, str)

    def tell(phase: str, **more: Any) -> None:
        if status is not None:
            status({"phase": phase, "rounds": cell.train.rounds, "steps": cell.train.steps,
                    "total": cell.train.rounds * cell.train.steps, **more})

    if resume and out_dir is not None:
        from harness.sweeps.cell_outputs import finished_record

        if (done_record := finished_record(out_dir, cell.cell_id)) is not None:
            log(f"cell {cell.cell_id} already finished in {out_dir} (--no-resume runs it again)")
            t = time.perf_counter() - t_start  # this call's timings: nothing trained or evaluated
            return {**done_record, "timings": {"load_s": t, "train_s": 0.0, "eval_s": 0.0, "total_s": t},
                    "reused": True}
    from harness.sweeps.tracking import from_env as tracker_from_env

    tracker = tracker_from_env(cell)  # --log-to wandb|mlflow|tensorboard
    tell("load")
    seed_everything(cfg.seed)
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    with _loading(cfg.model):
        loaded = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype, device=device)
    engine_spec = host.registry.engine(cfg.engine)
    if not engine_spec.available():
        raise HarnessError(f"engine '{cfg.engine}' is not available here: {engine_spec.install_hint}")
    from harness.training.defaults import update_warning

    if cell.train.rounds * cell.train.steps > 0 and (
        warning := update_warning(cfg.model, sum(p.numel() for p in loaded.model.parameters()), cell.train.lr,
                                  lora=cell.train.lora)):
        log(f"warning: {warning}")

    shared: list[Any] = []  # an engine with its own weights (vLLM): ONE per cell, synced to whoever uses it

    def engine_for(model: Any) -> Any:
        if shared:
            return shared[0]
        engine = engine_spec.factory(LoadedModel(model, loaded.tokenizer, loaded.name, loaded.source))
        if getattr(engine, "own_weights", False):
            shared.append(engine)
        warm_engine(engine, log)
        return engine

    policy = LM(loaded.model, loaded.tokenizer, engine_for(loaded.model), name="policy")
    tell("warm start")
    warm = _warm_start(cell, policy, log, cache)
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
    train_t0 = [0.0, 0]  # when this process's training started, steps done by it since

    def on_step(rnd: int, step: int) -> None:
        if tracker is not None:
            tracker.log(trainer.history[-1].metrics, trainer.global_step)
        train_t0[1] += 1
        tell("train", round=rnd + 1, step=step, done=rnd * cell.train.steps + step, done_here=train_t0[1],
             train_s=time.perf_counter() - train_t0[0])

    trainer = Trainer(
        method=cell.method, method_params=cell.method_params, cfg=cell.train, policy=policy, data=data,
        seed=cfg.seed, engine_factory=engine_for, checkpoint_dir=out_dir / "checkpoint" if out_dir else None,
        progress=progress, modules=modules, cache=cache, model_key=initial_model_key(cell),
        on_step=on_step if status is not None or tracker is not None else None,
        on_phase=(lambda what, rnd: tell(what, round=rnd + 1)) if status is not None else None,
    )
    timings = {"load_s": time.perf_counter() - t_start, "train_s": 0.0, "eval_s": 0.0}
    rounds: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    reference = trainer.reference.lm if trainer.reference else None
    evaluated_here: list[int | None] = [None]  # the label of the last evaluation this process ran

    def eval_round(label: int) -> None:
        tell("eval", round=label)
        t0 = time.perf_counter()
        with isolated_rng(device):  # an evaluation never shifts the training's random stream
            metrics, recs = evaluate(cell, policy, policy.engine, reference, log)
        timings["eval_s"] += time.perf_counter() - t0
        if rounds and rounds[-1]["round"] == label:
            rounds.pop()
        rounds.append({"round": label, "metrics": metrics})
        if tracker is not None:
            tracker.log({f"eval/{k}": v for k, v in metrics.items()}, trainer.global_step)
        records[:] = recs
        evaluated_here.append(label)
        log(f"round {label}: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if out_dir is not None:  # records first: rounds.json naming a round means its records are there
            _write_json(out_dir / "records.json", {"round": label, "records": recs})
            _write_json(out_dir / "rounds.json", rounds)

    saved = (_read_json(out_dir / "rounds.json") if resume and out_dir is not None else None) or []
    saved_records = (_read_json(out_dir / "records.json") if resume and out_dir is not None else None) or {}
    if saved and saved[0].get("round") == 0:
        rounds[:] = saved[:1]  # the initial policy's evaluation
    elif cell.train.eval_initial or cell.train.rounds == 0:
        eval_round(0)  # before loading any checkpoint: this is the initial policy
    if resume and trainer.try_resume():
        done = trainer.start_round  # the label of the checkpointed round
        rounds[:] = [r for r in saved if r["round"] <= done] or rounds
        mid = f" at step {trainer.resume_mid['step']} of round {done + 1}" if trainer.resume_mid else ""
        log(f"resumed after round {done}{mid} from {out_dir / 'checkpoint' if out_dir else '?'}")
        due = cell.train.eval_every_round or done == cell.train.rounds
        if due and (not rounds or rounds[-1]["round"] < done):  # died between the checkpoint and its evaluation
            log(f"round {done} was checkpointed but not evaluated: evaluating the checkpoint")
            eval_round(done)
    if rounds and evaluated_here[-1] != rounds[-1]["round"]:  # the last evaluation came from disk: so do its records
        if saved_records.get("round") == rounds[-1]["round"]:
            records[:] = saved_records.get("records") or []
        elif trainer.start_round >= cell.train.rounds:
            eval_round(rounds[-1]["round"])  # a finished run whose last records were lost: evaluate again
    train_t0[0] = time.perf_counter()
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
    cache_stats = stats_since(stats0)
    log("cache: " + (describe_stats(cache_stats) if cache is not None else "off"))
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
        "cache": cache_stats,
        "provenance": provenance(device),
    }
    if out_dir is not None:
        from harness.sweeps.cell_outputs import finish_outputs

        finish_outputs(cell, trainer, loaded.tokenizer, out_dir, record, log)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "record.json").write_text(json.dumps(record, indent=1, default=str))
        if not cell.train.keep_checkpoint:
            import shutil

            shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)  # the record holds the results
    if tracker is not None:
        tracker.finish()
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
    with _loading(model):
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
        items = Items(f"eval {name}")
        try:
            res = bench.evaluate(EvalContext(engine=CountingEngine(lm.engine, items), lm=lm, encoder=lm.encoder,
                                             params=params, seed=seed,
                                             limit=limit if limit is not None else getattr(params, "limit", None),
                                             progress=log, report=items))
        finally:
            items.close()
        metrics.update({f"{name}/{k}": float(v) for k, v in res.metrics.items()})
        if records is not None:
            records.extend({"benchmark": name, **r} for r in res.records)
    return metrics
