"""Run a suite: register its cells in the store, run what is not done yet, record every outcome.

``run_sweep`` is what ``harness sweep SUITE`` calls. The suite has been validated as a whole before
(:func:`harness.suite.load_suite`), so bad input fails before the store is touched. Then:

1. the sweep and its cells are recorded (new cells ``pending``; a cell already ``done``, in this sweep or
   another, is reused; ``failed`` cells are rerun only with ``retry_failed``);
2. cells are claimed (``running``, with the owner's host:pid:start-time) and handed to the executor;
   a cell whose warm start is not cached yet runs before the other cells sharing it (its prefix), so
   they hit the cache instead of computing it again in parallel;
3. each outcome is written in one transaction (``done`` with metrics, steps and records, or ``failed``
   with the reason: an exception, a non-finite loss, a timeout, a dead worker), and the sweep goes on;
4. a summary (done / failed / skipped, cache hits and misses, wall time) is printed and recorded.

A ``running`` row left by a killed sweep is taken over by the next one (its owner is dead), so a
kill -9 loses at most the cells that were running, and the cells table (keyed by id) never holds a
duplicate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import add_stats
from harness.executors import Executor, Task
from harness.store import Store, owner_token
from harness.suite import Suite, SweepCell


@dataclass
class SweepSummary:
    """What one invocation of a sweep did."""

    sweep_id: str
    cells: int
    done: int = 0
    failed: int = 0
    skipped_done: int = 0  # already done (this sweep or another) before this invocation
    skipped_failed: int = 0  # failed earlier, not retried
    busy: int = 0  # running in another live sweep
    warm_start: dict[str, int] = field(default_factory=lambda: {"hit": 0, "miss": 0, "none": 0})
    cache: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_s: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (cell id, label, error)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        ws = self.warm_start
        out = [
            f"sweep {self.sweep_id}: {self.cells} cells: {self.done} done, {self.failed} failed, "
            f"{self.skipped_done + self.skipped_failed + self.busy} skipped ({self.skipped_done} already done, "
            f"{self.skipped_failed} failed earlier, {self.busy} running elsewhere); wall time {self.wall_s:.1f} s",
            f"cache: warm start {ws['hit']} hits, {ws['miss']} misses ({ws['none']} cells without warm start)"
            + "".join(f"; {k} {v['hits']} hits, {v['misses']} misses" for k, v in sorted(self.cache.items())
                      if k != "warmstart"),
        ]
        out += [f"  failed {cid} {label}: {err}" for cid, label, err in self.failures]
        if self.skipped_failed:
            out.append("  (cells that failed earlier are skipped; --retry-failed reruns them)")
        return out


def cell_dir(store: Store, cell_id: str) -> Path:
    """Where a cell's worker log and outcome go: ``<store folder>/runs/<cell id>``."""
    return store.path.parent / "runs" / cell_id


def run_sweep(
    suite: Suite,
    store: Store,
    executor: Executor,
    *,
    retry_failed: bool = False,
    cell_timeout: float | None = None,
    threads: int = 1,
    plugins: list[str] | None = None,
    log: Callable[[str], None] = print,
    poll_s: float = 0.5,
) -> SweepSummary:
    """Run every cell of ``suite`` that is not done yet; see the module docstring."""
    t0 = time.perf_counter()
    timeout = cell_timeout if cell_timeout is not None else suite.cell_timeout
    store.add_sweep(suite.id, suite.name, str(suite.path) if suite.path else None, suite.data,
                    [c.row() for c in suite.cells])
    run_id = store.start_run(suite.id, executor.name)
    owner = owner_token()
    summary = SweepSummary(suite.id, len(suite.cells))
    status = store.cell_status(c.id for c in suite.cells)
    todo: list[SweepCell] = []
    for c in suite.cells:
        st = status.get(c.id, "pending")
        if st == "done":
            summary.skipped_done += 1
        elif st == "failed" and not retry_failed:
            summary.skipped_failed += 1
        else:
            todo.append(c)
    log(f"sweep {suite.id}: {len(suite.cells)} cells, {len(todo)} to run, {summary.skipped_done} already done"
        + (f", {summary.skipped_failed} failed earlier (--retry-failed reruns them)" if summary.skipped_failed else "")
        + f"; executor {executor.name}" + (f", cell timeout {timeout:g} s" if timeout else ""))

    number = {c.id: i + 1 for i, c in enumerate(todo)}
    width = len(str(len(todo)))
    pending = list(todo)
    running: dict[str, tuple[SweepCell, float]] = {}
    warming: set[str] = set()  # prefixes whose first cell is running (its warm start is not cached yet)
    warmed: set[str] = set()

    def tag(c: SweepCell) -> str:
        return f"[{number[c.id]:>{width}}/{len(todo)}]"

    def describe(c: SweepCell) -> str:
        return f"{c.id}  {c.config.model}  {c.label}  {c.config.benchmark}  seed={c.config.seed}"

    def pick() -> SweepCell | None:
        for c in pending:
            if c.prefix is None or c.prefix in warmed or c.prefix not in warming:
                return c
        return pending[0] if pending and not running else None

    try:
        while pending or running:
            while pending and executor.capacity() > 0:
                c = pick()
                if c is None:
                    break
                pending.remove(c)
                claim = store.claim(c.id, owner, retry_failed=retry_failed)
                if claim != "claimed":
                    if claim == "busy":
                        summary.busy += 1
                    elif claim == "done":
                        summary.skipped_done += 1
                    else:
                        summary.skipped_failed += 1
                    log(f"{tag(c)} skip   {describe(c)}  ({'running in another sweep' if claim == 'busy' else claim})")
                    continue
                if c.prefix is not None and c.prefix not in warmed:
                    warming.add(c.prefix)
                executor.submit(Task(id=c.id, base_id=c.base_id, config=c.config.to_dict(),
                                     cell_dir=str(cell_dir(store, c.id)), plugins=list(plugins or []),
                                     threads=threads, timeout=timeout))
                running[c.id] = (c, time.perf_counter())
                log(f"{tag(c)} start  {describe(c)}")
            for cid, outcome in executor.poll(poll_s):
                c, started = running.pop(cid)
                if c.prefix is not None:
                    warming.discard(c.prefix)
                    warmed.add(c.prefix)
                wall = float(outcome.get("wall_s") or time.perf_counter() - started)
                add_stats(summary.cache, outcome.get("cache"))
                if outcome.get("status") == "done":
                    record = outcome["record"]
                    store.finish(cid, record, wall_s=wall)
                    summary.done += 1
                    warm = record.get("warm_start", "none")
                    summary.warm_start[warm if warm in summary.warm_start else "none"] += 1
                    log(f"{tag(c)} done   {c.id}  {c.label}  {c.config.benchmark}  seed={c.config.seed}  "
                        f"{wall:.1f} s  (warm start: {warm})")
                else:
                    error = str(outcome.get("error") or "unknown error")
                    store.fail(cid, error, wall_s=wall)
                    summary.failed += 1
                    summary.failures.append((cid, c.label, error))
                    log(f"{tag(c)} FAILED {c.id}  {c.label}  {c.config.benchmark}  seed={c.config.seed}  "
                        f"{wall:.1f} s: {error}")
    except BaseException:
        executor.close()
        for cid in list(running):
            store.release(cid, owner)
        raise
    executor.close()
    summary.wall_s = time.perf_counter() - t0
    store.end_run(run_id, summary.as_dict())
    return summary
