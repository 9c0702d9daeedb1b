"""Where a sweep's cells run: ``local`` worker processes, or ``ray`` tasks.

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
  empties the allocator's cache). A worker whose cell failed, crashed or timed out is not reused: the
  next cell gets a fresh one. The same guarantees hold (own process group, dies with the sweep, one
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

Multi-GPU training of ONE cell stays with accelerate (``accelerate launch`` around ``harness run``);
executors only place whole cells.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
    ``first_step_at`` (``time.time()`` when its first training step ended; absent if it trained none)."""
    t0 = time.perf_counter()
    first_step: dict[str, float] = {}
    try:
        import torch

        from harness.core.cache import open_cache
        from harness.core.plugins import load
        from harness.sweeps.run import CellConfig, resolve, run_cell

        torch.set_num_threads(max(1, int(task.get("threads") or 1)))
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


# -- local processes ----------------------------------------------------------------------------------------


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``); if the parent is already
    gone (reparented before the call), die now."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent == 1:
        os.kill(os.getpid(), signal.SIGKILL)


LOCK_NAME = ".lock"


def folder_lock(cell_dir: str | os.PathLike[str], wait_s: float = 0.0) -> Any:
    """An exclusive ``flock`` on ``<cell dir>/.lock`` (the open file; closing it, or the process ending,
    releases it), or None when another process holds it for longer than ``wait_s``."""
    import fcntl

    path = Path(cell_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - the lock lives as long as the file stays open
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                f.close()
                return None
            time.sleep(0.1)
            continue
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        return f


def folder_in_use(cell_dir: str | os.PathLike[str]) -> bool:
    """Whether some process holds ``<cell dir>/.lock`` now."""
    if not (Path(cell_dir) / LOCK_NAME).exists():
        return False
    lock = folder_lock(cell_dir)
    if lock is None:
        return True
    lock.close()
    return False


def _watchdog(sweep_owner: str, every_s: float = 0.25) -> None:
    """A daemon thread: SIGKILL this worker's process group once the sweep that started it is gone."""
    import threading

    from harness.sweeps.store import owner_alive

    def watch() -> None:
        while owner_alive(sweep_owner) is not False:
            time.sleep(every_s)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="harness-sweep-watchdog", daemon=True).start()


def _write_outcome(outcome_path: str, outcome: dict[str, Any]) -> None:
    tmp = outcome_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(outcome, f, default=str)
    os.replace(tmp, outcome_path)


def _busy_folder(task: dict[str, Any]) -> dict[str, Any]:
    return {"status": "failed", "wall_s": 0.0,
            "error": f"{task['cell_dir']} is in use by another process for over 30 s (its {LOCK_NAME})"}


def _child(task: dict[str, Any], outcome_path: str, log_path: str) -> None:
    """The body of a local worker process that runs one cell."""
    die_with_parent()
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)  # its own process group, so a timeout kills what the cell started too
    if task.get("sweep_owner"):
        _watchdog(task["sweep_owner"])
    lock = folder_lock(task["cell_dir"], wait_s=30.0)
    if lock is None:
        _write_outcome(outcome_path, _busy_folder(task))
        return
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log

    def say(msg: str) -> None:
        log.write(f"{msg}\n")

    outcome = run_task(task, log=say)
    outcome["worker"] = {"pid": os.getpid(), "cell": 1}
    _write_outcome(outcome_path, outcome)
    log.flush()


def _worker_loop(conn: Any, sweep_owner: str | None) -> None:
    """The body of a reused local worker: runs the cells sent over ``conn`` one after another.

    For each ``(task, outcome path, log path)`` it takes the cell folder's lock, points its stdout and
    stderr (file descriptors 1 and 2) at the cell's log, runs the cell, writes ``outcome.json``, frees the
    cell's memory (:func:`free_memory`) and answers ``{"id": cell id}``. ``None`` or the sweep's end of
    the pipe closing ends it. The outcome's ``worker`` says which process ran the cell, its how-manieth cell
    it was, and what outlived it (:func:`leftovers`)."""
    die_with_parent()
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)
    if sweep_owner:
        _watchdog(sweep_owner)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    # One stream over fds 1 and 2 for the process's life: handlers that captured sys.stderr in one cell
    # write to the running cell's log in the next.
    out = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.stderr = out
    cells = 0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        task, outcome_path, log_path = msg
        cells += 1
        lock = folder_lock(task["cell_dir"], wait_s=30.0)
        if lock is None:
            outcome = _busy_folder(task)
        else:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            out.write(f"worker {os.getpid()}: cell {cells} in this process\n")
            outcome = run_task(task, log=lambda m: out.write(f"{m}\n"))
            out.flush()
        free_memory()  # before the outcome: what the cell left behind is part of it
        outcome["worker"] = {"pid": os.getpid(), "cell": cells, **leftovers()}
        _write_outcome(outcome_path, outcome)
        if lock is not None:
            lock.close()
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            conn.send({"id": task["id"]})
        except OSError:
            break


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # harness.sweeps.forkserver_guard first: the fork server dies with the sweep that started it
        ctx.set_forkserver_preload(["harness.sweeps.forkserver_guard", "harness.sweeps.executors", "harness.sweeps.run",
                                    "harness.core.plugins"])
        return ctx
    return multiprocessing.get_context("spawn")


def prestart() -> None:
    """Start the fork server now, so that its imports overlap the suite's validation."""
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


@dataclass
class _Worker:
    """A reused worker process and the sweep's end of its pipe."""

    process: Any
    conn: Any
    cells: int = 0


@dataclass
class _Running:
    task: Task
    process: Any
    started: float
    worker: _Worker | None = None  # set when the process is a reused worker


class LocalExecutor(Executor):
    """``jobs`` worker processes on this machine: one fresh process per cell, or (``reuse``) processes that
    run cell after cell until one fails."""

    name = "local"

    def __init__(self, jobs: int = 1, *, reuse: bool = False) -> None:
        if jobs < 1:
            raise HarnessError(f"--jobs {jobs}: give 1 or more")
        self.jobs = jobs
        self.reuse = reuse
        self.ctx = _context()
        self._running: dict[str, _Running] = {}
        self._idle: list[_Worker] = []
        self.worker_starts = 0  # processes started so far

    def capacity(self) -> int:
        return self.jobs - len(self._running)

    def running(self) -> list[str]:
        return list(self._running)

    def worker(self, cell_id: str) -> str | None:
        """``host:pid:start`` of the worker running a cell (the leader of its process group)."""
        from harness.sweeps.store import owner_token

        r = self._running.get(cell_id)
        return owner_token(r.process.pid) if r is not None and r.process.pid else None

    def submit(self, task: Task) -> None:
        cell_dir = Path(task.cell_dir)
        cell_dir.mkdir(parents=True, exist_ok=True)
        (cell_dir / "outcome.json").unlink(missing_ok=True)
        (cell_dir / "progress.json").unlink(missing_ok=True)
        args = (task.to_dict(), str(cell_dir / "outcome.json"), str(cell_dir / "worker.log"))
        if self.reuse:
            self._submit_reused(task, args)
            return
        p = self.ctx.Process(target=_child, args=args, name=f"harness-cell-{task.id}")
        p.start()
        self.worker_starts += 1
        self._running[task.id] = _Running(task, p, time.monotonic())

    def _submit_reused(self, task: Task, message: tuple[Any, ...]) -> None:
        while self._idle:
            w = self._idle.pop(0)
            if w.process.exitcode is None:
                try:
                    w.conn.send(message)
                except OSError:
                    self._retire(w)
                    continue
                w.cells += 1
                self._running[task.id] = _Running(task, w.process, time.monotonic(), w)
                return
            self._retire(w)
        ours, theirs = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_loop, args=(theirs, task.sweep_owner), name="harness-worker")
        p.start()
        theirs.close()
        self.worker_starts += 1
        w = _Worker(p, ours, cells=1)
        w.conn.send(message)
        self._running[task.id] = _Running(task, p, time.monotonic(), w)

    def _retire(self, w: _Worker) -> None:
        """End a reused worker: ask it to stop, then kill its process group."""
        try:
            w.conn.send(None)
        except OSError:
            pass
        w.process.join(2)
        try:
            os.killpg(w.process.pid, signal.SIGKILL)
        except (AttributeError, ProcessLookupError, PermissionError):
            w.process.kill()
        w.process.join(5)
        w.conn.close()

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        from multiprocessing.connection import wait

        if self._running:
            deadlines = [r.started + r.task.timeout for r in self._running.values() if r.task.timeout]
            until = min([time.monotonic() + timeout, *deadlines])
            ready = [r.process.sentinel for r in self._running.values()]
            ready += [r.worker.conn for r in self._running.values() if r.worker is not None]
            wait(ready, max(0.0, until - time.monotonic()))
        out = []
        now = time.monotonic()
        for cid, r in list(self._running.items()):
            if r.worker is not None and self._answered(r.worker):
                del self._running[cid]
                outcome = self._outcome(r, now)
                if outcome.get("status") == "done" and r.process.exitcode is None:
                    self._idle.append(r.worker)  # the next cell runs in this process
                else:
                    self._retire(r.worker)  # a failed cell may have left the process unusable
                out.append((cid, outcome))
                continue
            if r.process.exitcode is None:
                if r.task.timeout and now - r.started > r.task.timeout:
                    self._kill(r)
                    out.append((cid, {"status": "failed", "wall_s": now - r.started,
                                      "error": f"timeout: killed after the cell timeout of {r.task.timeout:g} s"}))
                    del self._running[cid]
                continue
            r.process.join()
            del self._running[cid]
            if r.worker is not None:
                r.worker.conn.close()
            out.append((cid, self._outcome(r, now)))
        return out

    @staticmethod
    def _answered(w: _Worker) -> bool:
        """Whether a reused worker reported its cell's end (outcome.json is written by then)."""
        try:
            if not w.conn.poll():
                return False
            w.conn.recv()
        except (EOFError, OSError):
            return False  # it died: its sentinel says so
        return True

    def _outcome(self, r: _Running, now: float) -> dict[str, Any]:
        path = Path(r.task.cell_dir) / "outcome.json"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                return {"status": "failed", "error": f"unreadable outcome: {exc}", "wall_s": now - r.started}
        code = r.process.exitcode
        how = f"signal {-code} ({signal.Signals(-code).name})" if code and code < 0 else f"exit code {code}"
        log = Path(r.task.cell_dir) / "worker.log"
        tail = _last_line(log)
        return {"status": "failed", "wall_s": now - r.started,
                "error": f"worker died ({how}); last line of {log}: {tail}" if tail else f"worker died ({how})"}

    def _kill(self, r: _Running) -> None:
        try:
            os.killpg(r.process.pid, signal.SIGKILL)
        except (AttributeError, ProcessLookupError, PermissionError):
            r.process.kill()
        r.process.join(5)
        if r.worker is not None:
            r.worker.conn.close()

    def close(self) -> None:
        for r in list(self._running.values()):
            self._kill(r)
        self._running.clear()
        while self._idle:
            self._retire(self._idle.pop())


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


# -- ray ---------------------------------------------------------------------------------------------------


def _ray_task(task: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: run one cell in the Ray worker process, then free its memory (the process may run more)."""
    logs: list[str] = []
    out = run_task(task, log=logs.append)
    out["log_tail"] = logs[-20:]
    free_memory()
    return out


class RayExecutor(Executor):
    """Each cell a Ray task with ``num_cpus`` / ``num_gpus``; joins ``address`` or starts a local Ray."""

    name = "ray"

    def __init__(self, *, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 jobs: int | None = None, init_kwargs: dict[str, Any] | None = None, reuse: bool = False) -> None:
        try:
            import ray
        except ImportError:
            raise HarnessError("--executor ray needs Ray: pip install 'alignment-harness[ray]'") from None
        self.ray = ray
        self._owns = False
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in ("HARNESS_CACHE", "HARNESS_RESULTS", "HF_HUB_OFFLINE", "HF_HOME")
                   if k in os.environ}
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "runtime_env": {"env_vars": env}, **(init_kwargs or {})}
            try:
                ray.init(address=address, **kwargs)
            except Exception as exc:  # noqa: BLE001
                raise HarnessError(f"--executor ray: could not start or join Ray"
                                   f"{' at ' + address if address else ''}: {_one_line(exc)}") from None
            self._owns = True
        self.remote_cluster = address is not None
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        resources = ray.cluster_resources()
        fits = [resources.get("CPU", 1) / num_cpus if num_cpus else float("inf")]
        if num_gpus:
            if not resources.get("GPU"):
                raise HarnessError(f"--num-gpus {num_gpus}: the Ray cluster has no GPUs")
            fits.append(resources["GPU"] / num_gpus)
        self.slots = max(1, int(min(fits)) if jobs is None else jobs)
        self.reuse = reuse
        self.remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_calls=1 if num_gpus and not reuse else 0,
                                 max_retries=0)(_ray_task)
        self._running: dict[str, tuple[Any, Task, float]] = {}

    def capacity(self) -> int:
        return self.slots - len(self._running)

    def running(self) -> list[str]:
        return list(self._running)

    def submit(self, task: Task) -> None:
        d = task.to_dict()
        d["threads"] = max(1, int(self.num_cpus or 1))
        if self.remote_cluster:  # the cell folder is on this machine: a task elsewhere can't checkpoint there
            d["resume"] = False
        else:
            Path(task.cell_dir).mkdir(parents=True, exist_ok=True)
            (Path(task.cell_dir) / "progress.json").unlink(missing_ok=True)
        self._running[task.id] = (self.remote.remote(d), task, time.monotonic())

    def poll(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        ray = self.ray
        if not self._running:
            return []
        by_ref = {ref: cid for cid, (ref, _, _) in self._running.items()}
        deadlines = [t0 + task.timeout for _, task, t0 in self._running.values() if task.timeout]
        wait_s = max(0.0, min([timeout, *[d - time.monotonic() for d in deadlines]]))
        ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=wait_s)
        if ready:
            ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        out = []
        now = time.monotonic()
        for ref in ready:
            cid = by_ref[ref]
            _, task, t0 = self._running.pop(cid)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a dead worker, an OOM kill...
                outcome = {"status": "failed", "error": f"ray task failed: {_one_line(exc)}", "wall_s": now - t0}
            out.append((cid, outcome))
        for cid, (ref, task, t0) in list(self._running.items()):
            if task.timeout and now - t0 > task.timeout:
                ray.cancel(ref, force=True)
                del self._running[cid]
                out.append((cid, {"status": "failed", "wall_s": now - t0,
                                  "error": f"timeout: cancelled after the cell timeout of {task.timeout:g} s"}))
        return out

    def close(self) -> None:
        for ref, _, _ in self._running.values():
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001, S110
                pass
        self._running.clear()
        if self._owns:
            self.ray.shutdown()


def make_executor(name: str, *, jobs: int | None, address: str | None = None, num_cpus: float = 1,
                  num_gpus: float = 0, reuse: bool = False) -> Executor:
    """``local`` or ``ray``, by name; ``reuse``: workers run cell after cell (see the module docstring)."""
    if name == "local":
        return LocalExecutor(jobs or 1, reuse=reuse)
    if name == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus, num_gpus=num_gpus, jobs=jobs, reuse=reuse)
    from harness.core.errors import unknown_name

    raise unknown_name("executor", name, ["local", "ray"], where="--executor")


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
