"""Where a sweep's cells run: ``local`` worker processes (:mod:`harness.sweeps.local_executor`), or ``ray``
tasks (:mod:`harness.sweeps.ray_executor`); here the interface they share and the worker-side ``run_task``
(this module imports neither executor: ``harness sweep`` picks one by name, :func:`harness.cli.sweep.make_executor`).

Both run one cell per process, so a crash, a hang or a timeout of one cell never takes the sweep down:

- :class:`LocalExecutor`: up to ``jobs`` processes at once, each a fresh process for one cell, forked
  from a ``multiprocessing`` fork server that has torch/transformers imported already (a cell starts in
  well under a second instead of ~7 s of imports; ``spawn`` where there is no fork server). Each worker
  sets ``torch.set_num_threads(threads)``, writes its log to ``<cell dir>/worker.log``, its progress
  (phase, round, step, total steps, elapsed training time) to ``<cell dir>/progress.json`` at most every
  0.5 s, and its outcome to ``<cell dir>/outcome.json``. With ``Task.resume`` the cell checkpoints each
  round into ``<cell dir>/checkpoint`` and a rerun resumes from it (``run_cell``). A cell past its timeout
  is killed (SIGKILL to its process group). A worker dies with the sweep: the fork server asks for
  SIGKILL when the sweep dies (``PR_SET_PDEATHSIG``, :mod:`harness.sweeps.forkserver_guard`), each worker asks
  for SIGKILL when the fork server dies, runs in its own process group (reaped by the fork server), and
  a watchdog thread kills that group once the sweep's ``host:pid:start`` token is no longer alive. So a
  kill -9 of the sweep leaves no process that keeps writing. While it runs, a worker holds an exclusive
  lock on ``<cell dir>/.lock`` (:func:`folder_lock`): no second process runs in the same folder.
  With ``reuse=True`` (``harness sweep --reuse-workers``, the default when the cells run on CUDA) a
  worker runs cell after cell: it keeps what a process pays once (CUDA context, cuBLAS handles, loaded
  kernels, compiled code, :func:`harness.engines.hf_static.warm_up`) and nothing of a cell (every cell
  loads its model anew and reseeds every RNG; between cells the worker collects garbage and, on CUDA,
  empties the allocator's cache; every process-wide setting the cell changed, from the default dtype and
  grad mode to thread counts, RNG states and environment variables, is put back: :mod:`harness.sweeps.
  process_state`). A worker whose cell failed, crashed or timed out, or changed a setting that cannot be
  put back in the same process (the interop thread count), is not reused: the next cell gets a fresh one. The same guarantees hold (own process group, dies with the sweep, one
  lock per cell folder); each outcome names its worker (``outcome.json``'s ``worker``: pid and how many
  cells that process ran).
- :class:`RayExecutor`: each cell is a Ray task declaring ``num_cpus`` / ``num_gpus``, with no retries.
  A task that uses a GPU gets a fresh worker process (``max_calls=1``, which frees GPU memory) unless
  ``reuse=True`` (then each task frees its memory itself); CPU tasks reuse Ray's workers (they pay the
  torch import once; every cell seeds everything anew).
  ``address=None`` starts a local Ray instance; ``--address`` joins a cluster whose nodes have this
  package installed. A timed-out task is cancelled with ``force=True`` (its worker is killed); the
  timeout counts from submission (it includes a new worker's start-up), and the executor submits no
  more tasks than the cluster has room for, so a task rarely waits in Ray's queue.

A cell with ``train.processes = N`` (one cell across N processes, :mod:`harness.cell.processes`) counts as
N of the local executor's jobs and gets N CPUs (or N GPUs) on ONE Ray node through a placement group; its
worker starts the N processes. A Ray task lost with its node (or its worker process) is rerun by Ray, up to
:data:`LOST_TASK_RETRIES` times (a cell's own failure is an outcome, never retried).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError


@dataclass
class Task:
    """What a worker needs to run one cell (plain data: it crosses process and machine boundaries)."""

    id: str
    base_id: str
    config: dict[str, Any]  # CellConfig.to_dict()
    cell_dir: str
    plugins: list[str] = field(default_factory=list)  # ad-hoc --plugin specs
    threads: int = 1
    timeout: float | None = None
    cache: str | None = None  # the cache folder, "off", or None: the worker's $HARNESS_CACHE
    resume: bool = True  # checkpoint into cell_dir each round and resume from there
    sweep_owner: str | None = None  # host:pid:start of the sweep: the worker kills itself when it is gone
    devices: list[int] = field(default_factory=list)  # the GPUs of its processes (local executor; [] = any)
    label: str | None = None  # the method's label in the sweep (names the cell's tracking run)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


LOST_TASK_RETRIES = 3
"""How many times Ray reruns a cell whose worker or node died (``max_retries``)."""


def processes_of(task: Task | dict[str, Any]) -> int:
    """The processes a task's cell trains in (``train.processes``, default 1)."""
    config = task.config if isinstance(task, Task) else task["config"]
    try:
        return max(1, int((config.get("train") or {}).get("processes", 1)))
    except (TypeError, ValueError):
        return 1


def wants_cuda(task: Task) -> bool:
    """Whether a task's cell runs on CUDA (``cuda``, ``cuda:N``, or ``auto`` on a machine with a GPU)."""
    return reuse_by_default([task.config.get("device", "cpu")])


class DevicePool:
    """This machine's GPUs shared out over the cells running at once: each cell takes its own list (N GPUs for
    ``train.processes = N``) and gives it back when it ends; a cell that does not fit waits."""

    def __init__(self, count: int) -> None:
        self.free = list(range(count))
        self.count = count

    def take(self, n: int) -> list[int] | None:
        """``n`` free GPUs (the lowest), or None when fewer are free; all of them when ``n`` > all there are."""
        n = min(n, self.count)
        if n > len(self.free):
            return None
        taken, self.free = self.free[:n], self.free[n:]
        return taken

    def give(self, devices: list[int]) -> None:
        self.free = sorted({*self.free, *devices})


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StatusFile:
    """Writes a cell's progress to ``path`` (JSON, atomically): every phase change and round end, and
    otherwise at most every ``every_s`` seconds. A folder that can't be written (a remote Ray worker) is
    ignored."""

    def __init__(self, path: str | os.PathLike[str], every_s: float = 0.5) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._last = -1e9
        self._phase: str | None = None

    def __call__(self, status: dict[str, Any]) -> None:
        now = time.monotonic()
        phase = status.get("phase")
        round_end = phase == "train" and status.get("step") == status.get("steps")
        if phase == self._phase and not round_end and now - self._last < self.every_s:
            return
        self._last, self._phase = now, phase
        try:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({**status, "t": time.time()}))
            os.replace(tmp, self.path)
        except OSError:
            pass


def read_status(cell_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last progress a worker wrote for a cell, or None."""
    try:
        return json.loads((Path(cell_dir) / "progress.json").read_text())
    except (OSError, ValueError):
        return None


def run_task(task: dict[str, Any], log: Any = print) -> dict[str, Any]:
    """Run one cell in this process; never raises. Returns ``{"status": "done", "record": ...}`` or
    ``{"status": "failed", "error": "one line"}``, with ``wall_s``, the cell's cache hits and misses and
    ``first_step_at`` (``time.time()`` when its first training step ended; absent if it trained none).

    The process-wide state the cell changed (default dtype, grad mode, RNGs, ...: :mod:`harness.sweeps.
    process_state`) is put back afterwards, so the next cell in this process starts as in a fresh one; the
    outcome names what was reset (``state_reset``) and what could not be (``state_stuck``: the worker that
    ran it must not run another cell)."""
    from harness.sweeps import process_state

    try:
        import torch

        torch.set_num_threads(max(1, int(task.get("threads") or 1)))  # the task's, before the state to keep
        before: process_state.ProcessState | None = process_state.capture()
    except Exception:  # noqa: BLE001 - the cell's own run reports what is broken
        before = None
    outcome = _run_task(task, log)
    try:
        changed, stuck = process_state.restore(before) if before is not None else ([], ["process state (not taken)"])
    except Exception as exc:  # noqa: BLE001 - never raise; the worker is replaced instead
        changed, stuck = [], [f"process state ({_one_line(exc)})"]
    if changed:
        outcome["state_reset"] = changed
        if settings := [c for c in changed if not c.endswith(" RNG")]:  # every cell moves the RNGs
            log(f"process-wide settings the cell changed, now put back: {', '.join(settings)}")
    if stuck:
        outcome["state_stuck"] = stuck
        log(f"process-wide state that cannot be reset in this process: {', '.join(stuck)}")
    return outcome


def _run_task(task: dict[str, Any], log: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    first_step: dict[str, float] = {}
    try:
        from harness.cell.run import CellConfig, resolve, run_cell
        from harness.core.cache import open_cache
        from harness.core.plugins import load

        if task.get("devices"):  # the GPUs this cell's processes use (harness.training.distributed.device_for)
            os.environ["HARNESS_DEVICES"] = ",".join(str(d) for d in task["devices"])
        else:
            os.environ.pop("HARNESS_DEVICES", None)
        host = load(task.get("plugins") or [])
        cfg = dict(task["config"])
        cfg["eval_benchmarks"] = tuple(cfg.get("eval_benchmarks", ()))
        cell = resolve(CellConfig(**cfg), host)
        if cell.cell_id != task["base_id"]:
            raise HarnessError(f"the cell resolves to {cell.cell_id} in the worker, not {task['base_id']}: the "
                               f"harness or a plugin differs between the sweep and this worker")
        resume = bool(task.get("resume", True))
        cell_dir = Path(task["cell_dir"])
        cache = open_cache(task["cache"]) if task.get("cache") else "auto"
        status_file = StatusFile(cell_dir / "progress.json")
        os.environ["HARNESS_TRACK_LABEL"] = str(task.get("label") or "")  # set per task: workers are reused

        def status(s: dict[str, Any]) -> None:
            if s.get("phase") == "train" and not first_step:
                first_step["first_step_at"] = time.time()
            status_file(s)

        record = run_cell(cell, host, out_dir=cell_dir if resume else None, resume=resume, progress=False, log=log,
                          cache=cache, status=status)
        bad = [k for k, v in record["final"].items() if v != v or v in (float("inf"), float("-inf"))]
        if bad:
            raise FloatingPointError(f"non-finite final metrics: {', '.join(bad)}")
        return {"status": "done", "record": record, "wall_s": time.perf_counter() - t0,
                "cache": record.get("cache", {}), **first_step}
    except BaseException as exc:  # noqa: BLE001 - a cell's failure is data, not a crash of the sweep
        log(traceback.format_exc())
        return {"status": "failed", "error": _one_line(exc), "wall_s": time.perf_counter() - t0}


def free_memory() -> None:
    """Between two cells in one process: collect garbage and, where CUDA is up, give the allocator's cached
    blocks back and restart its peak-memory count (the CUDA context, cuBLAS handles and kernels stay)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def leftovers() -> dict[str, Any]:
    """What outlives a cell in this process after :func:`free_memory`: models that ``load_model`` returned and
    that are still alive (``models_alive``: 0 unless something holds a cell's model) and, on CUDA, the memory
    still allocated (``cuda_allocated_mib``)."""
    out: dict[str, Any] = {}
    models = sys.modules.get("harness.models.loading")
    if models is not None:
        out["models_alive"] = len(models.LOADED)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_allocated_mib"] = round(torch.cuda.memory_allocated() / 2**20, 1)
    return out


class Executor:
    """The interface the sweep drives: submit while there is room, poll for outcomes, close."""

    name = "executor"

    def capacity(self) -> int:
        """How many more cells can start now."""
        raise NotImplementedError

    def submit(self, task: Task) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """Wait up to ``timeout`` s; return (cell id, outcome) for cells that ended (or timed out)."""
        raise NotImplementedError

    def running(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Kill whatever still runs."""


def default_threads(jobs: int, cores: int | None = None) -> int:
    """Torch threads per local worker: the cores shared out over the jobs."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def reuse_by_default(devices: Any) -> bool:
    """Whether workers are reused when the sweep does not say: yes when some cell runs on CUDA (``cuda``,
    ``cuda:N``, or ``auto`` on a machine with a GPU), where a fresh process pays CUDA's set-up again."""
    devices = {str(d) for d in devices}
    if any(d.startswith("cuda") for d in devices):
        return True
    if "auto" in devices:
        import torch

        return bool(torch.cuda.is_available())
    return False
