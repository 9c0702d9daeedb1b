"""One sweep cell end to end: load, warm-start, train round by round, evaluate, record.

``run_cell`` is what ``harness run`` calls and what the sweep's workers call for every cell.

**Resume.** With an ``out_dir``, each round's end writes a checkpoint (``checkpoint/``) and each
evaluation ``records.json`` then ``rounds.json`` (atomically). A rerun resumes from the checkpoint; if
the process died between a round's checkpoint and its evaluation, the checkpointed weights are evaluated
first, so no round's evaluation is lost and the final metrics are the last round's. A step checkpoint
(``train.checkpoint_every``, part-way through a round) is never evaluated: round 0 is the initial policy
or it is absent (``train.eval_initial=false``), and round k is always the weights at the end of round k. Evaluations run in a
forked RNG, so whether one is redone or reused never changes the training that follows.

**Cache.** The warm start, the reference log-probs and the generated samples go through the shared cache
(:mod:`harness.core.cache`); the cell's record says how many lookups hit (``record["cache"]``).

A cell's definition and resolution (``CellConfig``, ``ResolvedCell``, ``resolve``) live in
:mod:`harness.cell.definition` and are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.cell.definition import CellConfig, ResolvedCell, resolve
from harness.core.cache import Cache, describe_stats, model_identity, open_cache, stats_since, stats_snapshot
from harness.core.context import DataContext, EvalContext, EvalResult, TrainingData, WarmStartContext
from harness.core.digest import digest
from harness.core.params import apply_overrides, as_dict
from harness.core.plugins import PluginHost
from harness.core.progress import CountingEngine, Items, phase
from harness.core.version import __version__
from harness.engines.factory import make_engine
from harness.models.lm import LM
from harness.models.loading import LoadedModel, load_model
from harness.training import distributed
from harness.training.trainer import TrainConfig, Trainer


def _loading(model: str) -> contextlib.AbstractContextManager[None]:
    """A progress phase for loading a real model (tiny: ones load in milliseconds)."""
    return contextlib.nullcontext() if model.startswith("tiny:") else phase(f"loading {model}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)



def warm_start_key(cell: ResolvedCell) -> str | None:
    """The identity of the cell's warm start (None: its benchmark has none)."""
    bench = cell.benchmark
    if bench.warm_start is None:
        return None
    return digest([cell.config.model, cell.config.seed, bench.name, bench.version, as_dict(cell.benchmark_params),
                   __version__], 16)


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
        log(f"warm start for {bench.name}: read from the cache (cached)")
        return "hit"
    log(f"warm start for {bench.name}: {time.perf_counter() - t0:.1f} s (cache miss: computed, now saved)")
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


def evaluate(cell: ResolvedCell, lm: LM, engine: Any, reference: LM | None, log: Callable[[str], None],
             data: dict[str, Any] | None = None,
             on_items: Callable[[str, int, int | None, str], None] | None = None
             ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Every eval benchmark of the cell: metrics (``bench/metric``) and records; ``data`` collects which copy of
    its data each benchmark read (:class:`harness.core.data.DataCopy`, as a dict), by benchmark name;
    ``on_items(benchmark, done, total, what)`` gets the item counts as they change (the sweep's live line)."""
    metrics: dict[str, float] = {}
    records: list[dict[str, Any]] = []
    for spec, params in cell.evals:
        items = Items(f"eval {spec.name}", on_change=None if on_items is None else
                      (lambda done, total, what, name=spec.name: on_items(name, done, total, what)))
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
        _note_data(spec.name, res, data, log)
    return metrics, records


def eval_data(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Benchmark -> the copy of its data that the cell's evaluations read (the latest round's wins)."""
    out: dict[str, Any] = {}
    for r in rounds:
        out.update(r.get("data") or {})
    return out


def _note_data(name: str, res: EvalResult, data: dict[str, Any] | None, log: Callable[[str], None]) -> None:
    """Log and collect which copy of its data a benchmark read (nothing when it names none)."""
    copy = getattr(res, "data", None)
    if copy is None:
        return
    log(f"{name}: data: {copy.describe()}")
    if data is not None:
        data[name] = copy.as_dict()


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
    "reference log-probs" | "train" | "eval", ...}``, with round, step and total steps while training (see
    :func:`harness.sweeps.executors.run_task`). The phases, in order, are :class:`CellRun`'s methods.
    """
    t_start = time.perf_counter()
    from harness.cell import processes as run_processes

    where = run_processes.placement(cell)  # train.processes / a launcher: N processes (harness.training.distributed)
    if where == "spawn":
        return run_processes.run_spawned(cell, host, run_cell, out_dir=out_dir, resume=resume, progress=progress)
    if where == "rank":
        world = distributed.init_from_env(cell.config.device)
        cache = None  # the ranks would race on the cache's files
        if not world.main:  # rank 0 alone logs, reports status and shows progress
            log, status, progress = (lambda *_: None), None, False
            from harness.core.progress import set_quiet

            set_quiet(True)
    if resume and out_dir is not None:
        from harness.cell.outputs import finished_record

        if (done_record := finished_record(out_dir, cell.cell_id)) is not None:
            log(f"cell {cell.cell_id} already finished in {out_dir} (--no-resume runs it again)")
            t = time.perf_counter() - t_start  # this call's timings: nothing trained or evaluated
            return {**done_record, "timings": {"load_s": t, "train_s": 0.0, "eval_s": 0.0, "total_s": t},
                    "reused": True}
    run = CellRun(cell, host, out_dir=out_dir, resume=resume, progress=progress, log=log, cache=cache,
                  status=status, t_start=t_start)
    try:
        run.load()
        run.warm_start()
        run.prepare_training()
        run.restore()
        run.train()
        return run.record()
    except BaseException:
        run.close(ok=False)  # a tracking run of a failed cell ends as failed, not left open
        raise


class CellRun:
    """One cell's run, phase by phase: :meth:`load` (model, engine), :meth:`warm_start`,
    :meth:`prepare_training` (data, trainer), :meth:`restore` (earlier evaluations and the checkpoint),
    :meth:`train` (rounds, evaluating as due), :meth:`record` (the record and the cell's outputs)."""

    def __init__(self, cell: ResolvedCell, host: PluginHost, *, out_dir: Path | None, resume: bool, progress: bool,
                 log: Callable[[str], None], cache: Cache | None | str, status: Callable[[dict[str, Any]], None] | None,
                 t_start: float) -> None:
        self.cell, self.host, self.out_dir, self.resume, self.progress = cell, host, out_dir, resume, progress
        self.log, self.status, self.t_start = log, status, t_start
        self.stats0 = stats_snapshot()
        if cache == "auto":
            cache = open_cache()
        assert not isinstance(cache, str)
        self.cache: Cache | None = cache
        self.timings: dict[str, float] = {"load_s": 0.0, "train_s": 0.0, "eval_s": 0.0}
        self.rounds: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.by_round: dict[int, list[dict[str, Any]]] = {}  # every evaluated round's per-item records
        self.step_evals: list[dict[str, Any]] = []  # train.eval_every_steps: metrics inside rounds
        self.last_evaluated: int | None = None  # the label of the last evaluation this process ran
        self.shared: list[Any] = []  # an engine with its own weights (vLLM): ONE per cell, synced to its users
        self.train_started = 0.0  # when this process's training started
        self.steps_here = 0  # optimizer steps this process ran since
        self.warm = "none"
        self.tracker: Any = None
        self.world = distributed.world()  # rank 0 alone writes the run folder and tracks

    def tell(self, phase: str, **more: Any) -> None:
        if self.status is not None:
            train = self.cell.train
            self.status({"phase": phase, "rounds": train.rounds, "steps": train.steps,
                         "total": train.rounds * train.steps, **more})

    # -- phases ------------------------------------------------------------------------------------
    def load(self) -> None:
        """The model (``load_model``), its engine (warmed), the policy handle; the tracker."""
        from harness.cell.tracking import from_env as tracker_from_env

        cell, cfg = self.cell, self.cell.config
        self.tracker = tracker_from_env(cell) if self.world.main else None  # --log-to wandb|mlflow|tensorboard
        self.tell("load")
        seed_everything(cfg.seed)
        self.device = cfg.device
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.world.size > 1 or os.environ.get("HARNESS_DEVICES"):  # each rank its own GPU
            self.device = distributed.device_for(self.device, self.world.local_rank)
        with _loading(cfg.model):
            self.loaded = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype, device=self.device)
        from harness.training.defaults import update_warning

        if cell.train.rounds * cell.train.steps > 0 and (
            warning := update_warning(cfg.model, sum(p.numel() for p in self.loaded.model.parameters()),
                                      cell.train.lr, lora=cell.train.lora)):
            self.log(f"warning: {warning}")
        self.policy = LM(self.loaded.model, self.loaded.tokenizer, self.engine_for(self.loaded.model), name="policy")

    def engine_for(self, model: Any) -> Any:
        """The engine generating from ``model`` (one shared engine when it holds its own weights)."""
        if self.shared:
            return self.shared[0]
        loaded = self.loaded
        engine = make_engine(self.host.registry, self.cell.config.engine,
                             LoadedModel(model, loaded.tokenizer, loaded.name, loaded.source))
        if self.world.size > 1:  # greedy generations sharded by rank, gathered in prompt order
            engine = distributed.ShardedEngine(engine, self.world)
        if getattr(engine, "own_weights", False):
            self.shared.append(engine)
        warm_engine(engine, self.log)
        return engine

    def warm_start(self) -> None:
        """The method's warm start (cached), then LoRA adapters if asked for."""
        self.tell("warm start")
        self.warm = _warm_start(self.cell, self.policy, self.log, self.cache)
        if self.cell.train.lora:
            self.policy.model = _apply_lora(self.policy.model, self.cell.train)
            self.policy.engine = self.engine_for(self.policy.model)

    def prepare_training(self) -> None:
        """The training data (from the benchmark or dataset), the method's extra modules, the trainer."""
        cell, policy = self.cell, self.policy
        data_ctx = DataContext(params=cell.benchmark_params, encoder=policy.encoder, seed=cell.config.seed)
        data = TrainingData(
            loader=lambda kind: cell.benchmark.data(kind, data_ctx),  # type: ignore[misc]
            reward_fn=cell.benchmark.reward,
            provides=cell.benchmark.provides,
        )
        modules = cell.method.modules(policy.model, cell.method_params) if cell.method.modules else None
        out_dir = self.out_dir
        self.trainer = Trainer(
            method=cell.method, method_params=cell.method_params, cfg=cell.train, policy=policy, data=data,
            seed=cell.config.seed, engine_factory=self.engine_for,
            checkpoint_dir=out_dir / "checkpoint" if out_dir else None,
            progress=self.progress, modules=modules, cache=self.cache, model_key=initial_model_key(cell),
            on_step=self.on_step if (self.status is not None or self.tracker is not None
                                     or cell.train.eval_every_steps) else None,
            on_phase=(lambda what, rnd: self.tell(what, round=rnd + 1)) if self.status is not None else None,
        )
        self.timings["load_s"] = time.perf_counter() - self.t_start
        self.reference = self.trainer.reference.lm if self.trainer.reference else None

    def on_step(self, rnd: int, step: int) -> None:
        train = self.cell.train
        if train.eval_every_steps and self.trainer.global_step % train.eval_every_steps == 0 and not (
                step == train.steps and (train.eval_every_round or rnd == train.rounds - 1)):  # not a round's end
            self.evaluate_step(rnd)
        if self.tracker is not None:
            self.tracker.log(self.trainer.history[-1].metrics, self.trainer.global_step)
        self.steps_here += 1
        self.tell("train", round=rnd + 1, step=step, done=rnd * self.cell.train.steps + step,
                  done_here=self.steps_here, train_s=time.perf_counter() - self.train_started)

    def evaluate_step(self, rnd: int) -> None:
        """``train.eval_every_steps``: evaluate inside a round; the metrics join the step's (``eval/...``)."""
        t0 = time.perf_counter()
        with isolated_rng(self.device):
            metrics, _ = evaluate(self.cell, self.policy, self.policy.engine, self.reference, self.log)
        self.timings["eval_s"] += time.perf_counter() - t0
        step = self.trainer.global_step
        self.step_evals.append({"round": rnd + 1, "step": step, "metrics": metrics})
        self.trainer.history[-1].metrics.update({f"eval/{k}": v for k, v in metrics.items()})
        self.log(f"step {step}: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def evaluate(self, label: int) -> None:
        """Evaluate the policy as it is now, as round ``label`` (records first, then rounds.json)."""
        started = time.time()  # the live line's clock runs from here, not from the round's start
        self.tell("eval", round=label, started=started)

        def on_items(bench: str, done: int, total: int | None, what: str) -> None:
            self.tell("eval", round=label, started=started, benchmark=bench, items=done, items_total=total,
                      what=what)

        t0 = time.perf_counter()
        with isolated_rng(self.device):  # an evaluation never shifts the training's random stream
            data: dict[str, Any] = {}
            metrics, recs = evaluate(self.cell, self.policy, self.policy.engine, self.reference, self.log, data,
                                     on_items if self.status is not None else None)
        self.timings["eval_s"] += time.perf_counter() - t0
        rounds = self.rounds
        if rounds and rounds[-1]["round"] == label:
            rounds.pop()
        rounds.append({"round": label, "metrics": metrics, **({"data": data} if data else {})})
        if self.tracker is not None:
            self.tracker.log({f"eval/{k}": v for k, v in metrics.items()}, self.trainer.global_step)
        recs = [{**r, "round": label} for r in recs]  # which evaluation an item belongs to
        self.records[:] = recs
        self.by_round[label] = recs
        self.last_evaluated = label
        self.log(f"round {label}: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if self.out_dir is not None and self.world.main:  # records first: rounds.json naming a round means its
            # records are there
            _write_json(self.out_dir / "rounds" / f"records-{label}.json", recs)  # every round's, for the record
            _write_json(self.out_dir / "records.json", {"round": label, "records": recs})
            _write_json(self.out_dir / "rounds.json", rounds)

    def restore(self) -> None:
        """The initial evaluation (from disk or run now), then the checkpoint, if any, and what it missed."""
        cell, trainer, out_dir, rounds = self.cell, self.trainer, self.out_dir, self.rounds
        saved = (_read_json(out_dir / "rounds.json") if self.resume and out_dir is not None else None) or []
        saved_records = (_read_json(out_dir / "records.json") if self.resume and out_dir is not None else None) or {}
        if saved and saved[0].get("round") == 0:
            rounds[:] = saved[:1]  # the initial policy's evaluation
        elif cell.train.eval_initial or cell.train.rounds == 0:
            self.evaluate(0)  # before loading any checkpoint: this is the initial policy
        if self.resume and trainer.try_resume():
            done = trainer.start_round  # the label of the checkpointed round
            rounds[:] = [r for r in saved if r["round"] <= done] or rounds
            mid = f" at step {trainer.resume_mid['step']} of round {done + 1}" if trainer.resume_mid else ""
            self.log(f"resumed after round {done}{mid} from {out_dir / 'checkpoint' if out_dir else '?'}")
            due = cell.train.eval_every_round or done == cell.train.rounds
            # Only a checkpoint at the end of a trained round is that round's weights: a step checkpoint
            # (resume_mid) is part-way through round done + 1, and round 0 is the initial policy, which no
            # checkpoint holds. Evaluating either would record trained weights under the wrong label.
            at_round_end = done >= 1 and not trainer.resume_mid
            if due and at_round_end and (not rounds or rounds[-1]["round"] < done):  # died before its evaluation
                self.log(f"round {done} was checkpointed but not evaluated: evaluating the checkpoint")
                self.evaluate(done)
        if rounds and self.last_evaluated != rounds[-1]["round"]:  # the last evaluation came from disk
            if saved_records.get("round") == rounds[-1]["round"]:  # so do its records
                self.records[:] = saved_records.get("records") or []
            elif trainer.start_round >= cell.train.rounds:
                self.evaluate(rounds[-1]["round"])  # a finished run whose last records were lost: evaluate again

    def train(self) -> None:
        """The remaining rounds, each evaluated when due (every round, or the last)."""
        cell, trainer = self.cell, self.trainer
        self.train_started = time.perf_counter()
        for rnd in range(trainer.start_round, cell.train.rounds):
            t0 = time.perf_counter()
            steps = trainer.train_round(rnd)
            self.timings["train_s"] += time.perf_counter() - t0
            last = steps[-1].metrics
            self.log(f"round {rnd + 1}/{cell.train.rounds} trained: " + "  ".join(
                f"{k}={v:.4g}" for k, v in last.items() if k not in ("lr", "step_s")))
            if cell.train.eval_every_round or rnd == cell.train.rounds - 1:
                self.evaluate(rnd + 1)

    def record(self) -> dict[str, Any]:
        """The cell's record; with an ``out_dir`` also its outputs, ``record.json``, no checkpoint."""
        cell, out_dir, rounds = self.cell, self.out_dir, self.rounds
        self.timings["total_s"] = time.perf_counter() - self.t_start
        cache_stats = stats_since(self.stats0)
        self.log("cache: " + (describe_stats(cache_stats) if self.cache is not None else "off"))
        record = {
            "cell_id": cell.cell_id,
            "config": cell.resolved_dict(),
            "status": "done",
            "rounds": rounds,
            "final": rounds[-1]["metrics"] if rounds else {},
            "steps": [{"round": h.round, "step": h.step, **h.metrics} for h in self.trainer.history],
            "records": self.records,
            "round_records": self.earlier_records(),
            "step_evals": self.step_evals,
            "timings": self.timings,
            "warm_start": self.warm,
            "cache": cache_stats,
            "provenance": {**provenance(self.device), "processes": self.world.size,
                           **({"strategy": cell.train.strategy} if self.world.size > 1 else {}),
                           **({"data": data} if (data := eval_data(rounds)) else {})},
        }
        if out_dir is not None and self.world.main:
            from harness.cell.outputs import finish_outputs

            finish_outputs(cell, self.trainer, self.loaded.tokenizer, out_dir, record, self.log)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "record.json").write_text(json.dumps(record, indent=1, default=str))
            if not cell.train.keep_checkpoint:
                import shutil

                shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)  # the record holds the results
            if self.tracker is not None:  # mlflow: the record and the saved model as artefacts
                self.tracker.artifacts([out_dir / "record.json",
                                        *[Path(record[k]) for k in ("model_dir", "reward_model_dir") if k in record]])
        self.close(ok=True)
        return record

    def earlier_records(self) -> dict[str, list[dict[str, Any]]]:
        """Round label -> per-item records of every evaluated round before the last (``records`` holds the
        last): from this process, else from ``<out>/rounds/`` (evaluations before a resume)."""
        labels = [r["round"] for r in self.rounds[:-1]]
        out: dict[str, list[dict[str, Any]]] = {}
        for label in labels:
            recs = self.by_round.get(label)
            if recs is None and self.out_dir is not None:
                recs = _read_json(self.out_dir / "rounds" / f"records-{label}.json")
            if recs:
                out[str(label)] = recs
        return out

    def close(self, ok: bool) -> None:
        """End the cell's tracking run (``ok``: finished, else failed)."""
        if self.tracker is not None:
            self.tracker.finish(ok=ok)
            self.tracker = None


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
    data: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Evaluate a model as loaded (no training) on benchmarks; ``overrides`` apply to the first one.

    ``limit`` caps every benchmark's items; per-item records are appended to ``records`` if given, and
    ``data`` gets, per benchmark, the copy of its data it read (:class:`harness.core.data.DataCopy` as a dict).
    """
    seed_everything(seed)
    with _loading(model):
        loaded = load_model(model, seed=seed, dtype=dtype, device=device)
    lm = LM(loaded.model, loaded.tokenizer, make_engine(host.registry, engine, loaded))
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
        _note_data(name, res, data, log)
        if records is not None:
            records.extend({"benchmark": name, **r} for r in res.records)
    return metrics


__all__ = ["CellConfig", "CellRun", "ResolvedCell", "evaluate", "evaluate_model", "provenance", "resolve", "run_cell",
           "seed_everything", "warm_engine"]
