"""The ``ray`` executor: each cell a Ray task (see :mod:`harness.sweeps.executors`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.sweeps.executors import (
    LOST_TASK_RETRIES,
    Executor,
    Task,
    _one_line,
    free_memory,
    processes_of,
    run_task,
)


def _ray_task(task: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: run one cell in the Ray worker process, then free its memory (the process may run more)."""
    logs: list[str] = []
    out = run_task(task, log=logs.append)
    out["log_tail"] = logs[-20:]
    free_memory()
    return out


class RayExecutor(Executor):
    """Each cell a Ray task with ``num_cpus`` / ``num_gpus`` (times ``train.processes``, in a placement group
    on one node); joins ``address`` or starts a local Ray. A task lost with its node is rerun by Ray."""

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
            env = {k: os.environ[k] for k in ("HARNESS_CACHE", "HARNESS_RESULTS", "HF_HUB_OFFLINE", "HF_HOME",
                                              "OMP_WAIT_POLICY") if k in os.environ}
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
        # max_retries: Ray reruns a task whose worker or node died (an exception inside a cell is an outcome
        # that run_task returns, never raised, so it is not retried).
        self.remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_calls=1 if num_gpus and not reuse else 0,
                                 max_retries=LOST_TASK_RETRIES)(_ray_task)
        self._running: dict[str, tuple[Any, Task, float]] = {}
        self._groups: dict[str, Any] = {}  # cell id -> the placement group of a cell of several processes

    def capacity(self) -> int:
        """Free slots; a cell of ``train.processes = N`` holds N of them."""
        return self.slots - sum(processes_of(task) for _, task, _ in self._running.values())

    def _submit_ref(self, task: Task, d: dict[str, Any]) -> Any:
        """The task's object ref; a cell of N processes gets N CPUs (N GPUs) in one bundle of a placement
        group, so all its processes run on one node, where its worker starts them."""
        n = processes_of(task)
        if n == 1:
            return self.remote.remote(d)
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundle = {"CPU": n * max(self.num_cpus, 1)}
        if self.num_gpus:
            bundle["GPU"] = n * self.num_gpus
        group = placement_group([bundle], strategy="STRICT_PACK")
        self._groups[task.id] = group
        return self.remote.options(num_cpus=bundle["CPU"], num_gpus=bundle.get("GPU", 0),
                                   scheduling_strategy=PlacementGroupSchedulingStrategy(group)).remote(d)

    def _release(self, cell_id: str) -> None:
        group = self._groups.pop(cell_id, None)
        if group is not None:
            try:
                self.ray.util.remove_placement_group(group)
            except Exception:  # noqa: BLE001, S110 - already gone with its node
                pass

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
        self._running[task.id] = (self._submit_ref(task, d), task, time.monotonic())

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
            self._release(cid)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a dead worker, an OOM kill...
                outcome = {"status": "failed", "error": f"ray task failed: {_one_line(exc)}", "wall_s": now - t0}
            out.append((cid, outcome))
        for cid, (ref, task, t0) in list(self._running.items()):
            if task.timeout and now - t0 > task.timeout:
                ray.cancel(ref, force=True)
                del self._running[cid]
                self._release(cid)
                out.append((cid, {"status": "failed", "wall_s": now - t0,
                                  "error": f"timeout: cancelled after the cell timeout of {task.timeout:g} s"}))
        return out

    def close(self) -> None:
        for ref, _, _ in self._running.values():
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001, S110
                pass
        for cid in list(self._running):
            self._release(cid)
        self._running.clear()
        if self._owns:
            self.ray.shutdown()
