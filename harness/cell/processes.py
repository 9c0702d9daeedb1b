"""One cell across N processes (``train.processes = N``, ``harness run --nproc N``): :func:`placement` says
whether this process runs the cell alone, takes part as one rank of a launcher's group (``torchrun``,
``accelerate launch``), or must start the N processes itself (:func:`run_spawned`, through
:func:`harness.training.distributed.spawn`). Every rank runs the function it is given,
:func:`harness.cell.run.run_cell` (which calls this module, so it is passed in rather than imported); rank 0
alone writes the run folder and returns the record, which the starting process reads back.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from harness.cell.definition import CellConfig, ResolvedCell
from harness.core.errors import HarnessError
from harness.core.plugins import PluginHost
from harness.training import distributed


def placement(cell: ResolvedCell) -> Literal["alone", "rank", "spawn"]:
    """``alone`` (one process), ``rank`` (this process is one of a group) or ``spawn`` (start N processes).

    Under a launcher the launcher's number of processes wins; ``train.processes`` > 1 must then equal it."""
    asked = cell.train.processes
    if asked < 1:
        raise HarnessError(f"train.processes={asked}: give 1 or more")
    size = distributed.world().size if distributed.world().size > 1 else distributed.launched_size()
    if size > 1:
        if asked > 1 and asked != size:
            raise HarnessError(f"train.processes={asked} (--nproc), but the launcher started {size} processes: "
                               f"drop --nproc under torchrun / accelerate launch, or make them equal")
        return "rank"
    return "spawn" if asked > 1 else "alone"


RunCell = Callable[..., dict[str, Any]]
"""What runs one cell in a process: :func:`harness.cell.run.run_cell`."""


def _rank_main(run_cell: RunCell, config: dict[str, Any], plugins: list[str], kwargs: dict[str, Any], result: str,
               threads: int) -> None:
    """One rank of a spawned cell: resolve the cell again (fresh process), run it, rank 0 saves the record."""
    import torch

    from harness.cell.definition import resolve
    from harness.core.plugins import load, set_host

    torch.set_num_threads(threads)
    host = load(plugins, env={})
    set_host(host)
    cfg = dict(config)
    cfg["eval_benchmarks"] = tuple(cfg.get("eval_benchmarks", ()))
    cell = resolve(CellConfig(**cfg), host)
    w = distributed.world()
    from harness.core.progress import log

    record = run_cell(cell, host, log=log, **kwargs)  # run_cell silences the other ranks
    if w.main:
        with open(result, "wb") as f:
            pickle.dump(record, f)


def run_spawned(cell: ResolvedCell, host: PluginHost, run_cell: RunCell, *, out_dir: Path | None, resume: bool,
                progress: bool) -> dict[str, Any]:
    """Run ``cell`` in ``train.processes`` fresh processes on this machine, each calling ``run_cell`` (a
    module-level function: it is pickled by name); rank 0's record.

    ``cache`` is off in the ranks (they would race on its files). Live status stays with rank 0 (its log
    and progress bars); a sweep's worker sees the cell's phase only when it ends."""
    import torch

    plugins = [info.source for info in host.infos.values() if info.adhoc]
    n = cell.train.processes
    threads = max(1, torch.get_num_threads() // n)
    with tempfile.TemporaryDirectory(prefix="harness-ranks-") as tmp:
        result = os.path.join(tmp, "record.pkl")
        kwargs = {"out_dir": out_dir, "resume": resume, "progress": progress, "cache": None}
        distributed.spawn(n, cell.config.device, _rank_main, run_cell, cell.config.to_dict(), plugins, kwargs, result, threads)
        with open(result, "rb") as f:
            return pickle.load(f)  # noqa: S301 - written just now by our own rank 0


__all__ = ["placement", "run_spawned"]
