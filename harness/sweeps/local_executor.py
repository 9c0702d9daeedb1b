"""The ``local`` executor: worker processes on this machine, one per cell or reused cell after cell
(see :mod:`harness.sweeps.executors` for what each guarantees). Forked from a fork server that has torch
and the harness imported already (:func:`prestart`), each in its own process group, dying with the sweep
(parent-death signal, a watchdog on the sweep's token), holding its cell folder's lock while it runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.sweeps.executors import (
    DevicePool,
    Executor,
    Task,
    free_memory,
    leftovers,
    processes_of,
    run_task,
    wants_cuda,
)


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
    cell's memory (:func:`free_memory`) and answers ``{"id": cell id, "retire": bool}``; ``retire`` (the cell
    changed process-wide state that cannot be put back, see :func:`run_task`) ends it, as do ``None`` and
    the sweep's end of the pipe closing. The outcome's ``worker`` says which process ran the cell, its how-manieth cell
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
        retire = bool(outcome.get("state_stuck"))  # the next cell would not start as in a fresh process
        try:
            conn.send({"id": task["id"], "retire": retire})
        except OSError:
            break
        if retire:
            break


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # harness.sweeps.forkserver_guard first: the fork server dies with the sweep that started it
        ctx.set_forkserver_preload(["harness.sweeps.forkserver_guard", "harness.sweeps.executors", "harness.sweeps.local_executor",
                                    "harness.cell.run",
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
        self.gpus: DevicePool | None = None  # made when the first CUDA cell comes
        self._queued: list[Task] = []  # CUDA cells waiting for their GPUs

    def capacity(self) -> int:
        """Free jobs; a cell of ``train.processes = N`` holds N of them."""
        return self.jobs - sum(processes_of(t) for t in [*(r.task for r in self._running.values()), *self._queued])

    def running(self) -> list[str]:
        return [*self._running, *(t.id for t in self._queued)]

    def _devices_for(self, task: Task) -> bool:
        """Give a CUDA cell its own GPUs (``Task.devices``, one per process); False: they are taken, it waits."""
        if not wants_cuda(task):
            return True
        if self.gpus is None:
            import torch

            self.gpus = DevicePool(torch.cuda.device_count())
        devices = self.gpus.take(processes_of(task))
        if devices is None:
            return False
        task.devices = devices
        return True

    def _ended(self, cell_id: str) -> None:
        """A cell ended: its GPUs go back, and queued cells that now fit start."""
        r = self._running.pop(cell_id)
        if self.gpus is not None and r.task.devices:
            self.gpus.give(r.task.devices)
        for task in list(self._queued):
            if self._devices_for(task):
                self._queued.remove(task)
                self._start(task)

    def worker(self, cell_id: str) -> str | None:
        """``host:pid:start`` of the worker running a cell (the leader of its process group)."""
        from harness.sweeps.store import owner_token

        r = self._running.get(cell_id)
        return owner_token(r.process.pid) if r is not None and r.process.pid else None

    def submit(self, task: Task) -> None:
        if not self._devices_for(task):
            self._queued.append(task)
            return
        self._start(task)

    def _start(self, task: Task) -> None:
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
            if r.worker is not None and (answer := self._answered(r.worker)) is not None:
                self._ended(cid)
                outcome = self._outcome(r, now)
                if outcome.get("status") == "done" and not answer.get("retire") and r.process.exitcode is None:
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
                    self._ended(cid)
                continue
            r.process.join()
            self._ended(cid)
            if r.worker is not None:
                r.worker.conn.close()
            out.append((cid, self._outcome(r, now)))
        return out

    @staticmethod
    def _answered(w: _Worker) -> dict[str, Any] | None:
        """A reused worker's report of its cell's end (outcome.json is written by then), or None."""
        try:
            if not w.conn.poll():
                return None
            answer = w.conn.recv()
        except (EOFError, OSError):
            return None  # it died: its sentinel says so
        return answer if isinstance(answer, dict) else {}

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
        self._queued.clear()
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
