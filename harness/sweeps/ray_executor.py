"""The ``ray`` executor: each cell a Ray task (see :mod:`harness.sweeps.executors`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.sweeps.executors import Executor, Task, _one_line, free_memory, run_task


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
