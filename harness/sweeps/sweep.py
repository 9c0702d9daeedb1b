"""Run a suite: register its cells in the store, run what is not done yet, record every outcome.

``run_sweep`` is what ``harness sweep SUITE`` calls; the phases below are :class:`SweepRun`'s methods. The suite
has been validated as a whole before (:func:`harness.suite.expand.load_suite`), so bad input fails before the
store is touched. Then:

1. the sweep and its cells are recorded (new cells ``pending``; a cell already ``done``, in this sweep or
   another, is reused; ``failed`` cells are rerun only with ``retry_failed``);
2. cells are claimed (``running``, with the owner's host:pid:start-time) and handed to the executor;
   a cell whose warm start is not cached yet runs before the other cells sharing it (its prefix), so
   they hit the cache instead of computing it again in parallel;
3. while cells run, the sweep reads each one's ``<cell dir>/progress.json`` about every second and
   shows a live line per running cell (cell k of N, label, benchmark, seed, round, step / steps, ETA):
   refreshed in place on a terminal, else printed at most every 10 s (:class:`LiveStatus`);
4. each outcome is written in one transaction (``done`` with metrics, steps and records, or ``failed``
   with the reason: an exception, a non-finite loss, a timeout, a dead worker), and the sweep goes on;
   a done cell's checkpoint folder is then deleted (unless ``train.keep_checkpoint``);
5. a summary (done / failed / skipped, cache hits and misses per kind: warm start, reference log-probs,
   samples; wall time) is printed and recorded.

A ``running`` row left by a killed sweep is taken over by the next one (its owner is dead) once its old
worker processes are gone (they die with the sweep; until then the cell waits, ``lingering``), so a
kill -9 loses at most the cells that were running, and the cells table (keyed by id) never holds a
duplicate. A cell running in another live sweep is never taken over: it is skipped (``busy``). While
cells run the sweep beats their heartbeats in the store (:meth:`Store.beat`). Cells checkpoint each
round into ``<store folder>/<store stem>.runs/<cell id>/`` (one folder per store: two stores in one
folder never share a run folder) and the next sweep resumes a killed cell from its last round rather
than from the start. A worker holds its folder's lock while it runs.

The sweep's outcome is :meth:`SweepSummary.exit_code`: 0 only when every cell of the sweep is done.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.core.cache import KINDS, add_stats, cache_disabled, cache_root, describe_stats
from harness.core.plugins import get_host
from harness.suite.expand import Suite, SweepCell
from harness.sweeps.executors import Executor, Task, read_status
from harness.sweeps.local_executor import folder_in_use
from harness.sweeps.store import HEARTBEAT_S, Store, owner_token

# Cells to run held at once, ahead of the running ones: a cell waiting for a warm start shared with a running
# one (same prefix) lets the next cells in this window go first; beyond it, cells wait their turn.
LOOKAHEAD = 1000


@dataclass
class SweepSummary:
    """What one invocation of a sweep did."""

    sweep_id: str
    cells: int
    done: int = 0
    failed: int = 0
    skipped_done: int = 0  # already done (this sweep or another) before this invocation
    skipped_failed: int = 0  # failed earlier, not retried
    busy: int = 0  # running in another live sweep (or its old processes outlived it)
    done_now: int = -1  # cells of the sweep done in the store at the end (another sweep may have run some)
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
            f"cache: warm start {ws['hit']} hits, {ws['miss']} misses ({ws['none']} cells without warm start or "
            f"cache); " + describe_stats(self.cache, [k for k in KINDS if k != "warmstart"]),
        ]
        out += [f"  failed {cid} {label}: {err}" for cid, label, err in self.failures]
        if self.skipped_failed:
            out.append("  (cells that failed earlier are skipped; --retry-failed reruns them)")
        if self.busy and self.done_now >= self.cells:
            out.append("  (the cells another sweep ran are done too: every cell of the sweep is done)")
        elif self.busy:
            out.append("  (cells running in another sweep are skipped; run the sweep again once it ends)")
        return out

    def exit_code(self) -> int:
        """0: every cell of the sweep is done; 1: some cell failed (now or earlier); 3: some cell is not
        done because another sweep runs it."""
        if self.failed or self.skipped_failed:
            return 1
        if self.done_now >= self.cells:  # the cells another sweep ran are done too (it ended first)
            return 0
        if self.busy or self.done + self.skipped_done < self.cells:
            return 3
        return 0


def runs_dir(store_path: str | Path) -> Path:
    """The run folders of one store: ``<store folder>/<store stem>.runs`` (``results/harness.runs``)."""
    p = Path(store_path)
    return p.parent / f"{p.stem}.runs"


def cell_dir(store: Store, cell_id: str) -> Path:
    """Where a cell's worker log, progress, checkpoint and outcome go: ``<store stem>.runs/<cell id>``
    next to the store (stores before this layout used ``runs/<cell id>``, shared by every store of the
    folder; their checkpoints are not resumed from)."""
    return runs_dir(store.path) / cell_id


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def progress_text(status: dict[str, Any] | None, elapsed: float, now: float | None = None) -> str:
    """What a cell is doing, from its ``progress.json``: ``round 1/2  step 40/150 (13%)  ETA 1 min 05 s``."""
    if not status:
        return f"starting ({_duration(elapsed)})"
    phase = status.get("phase", "?")
    age = max(0.0, (now if now is not None else time.time()) - float(status.get("t", 0) or 0))
    if phase == "train":
        done, total = int(status.get("done", 0)), max(1, int(status.get("total", 1)))
        text = (f"round {status.get('round')}/{status.get('rounds')}  step {status.get('step')}/{status.get('steps')}"
                f"  ({100 * done / total:.0f}%)")
        if status.get("done_here"):
            eta = float(status["train_s"]) / int(status["done_here"]) * (total - done) - age
            text += _eta(eta, age, "step")
        return text
    if phase == "eval":
        started = status.get("started")
        clock = (now if now is not None else time.time()) - float(started) if started else elapsed
        text = f"evaluating round {status.get('round')}"
        if status.get("benchmark"):
            what = f" {status['what']}" if status.get("what") else ""
            items, total = int(status.get("items") or 0), status.get("items_total")
            text += f"  {status['benchmark']}{what} {items}/{total if total else '?'} items"
            if items and total and started:
                eta = (float(status.get("t", 0) or 0) - float(started)) / items * (int(total) - items) - age
                return text + f" ({_duration(clock)}){_eta(eta, age, 'item')}"
        return text + f" ({_duration(clock)})"
    if phase in ("sampling", "reference log-probs"):
        return f"round {status.get('round')}/{status.get('rounds')}  {phase} ({_duration(elapsed)})"
    return f"{phase} ({_duration(elapsed)})"


def _eta(eta: float, age: float, unit: str) -> str:
    """``  ETA 1 min 05 s``; when the estimate has run out, how long no progress came instead (a stuck
    cell shows that, not ``ETA 0 s``)."""
    if eta >= 1:
        return f"  ETA {_duration(eta)}"
    return f"  (no {unit} done for {_duration(age)})" if age >= 2 else "  ETA < 1 s"


class LiveStatus:
    """Live lines for the running cells, and the sweep's log lines.

    On a terminal (``tty``) the status lines are redrawn in place (``\r`` and ANSI erase, one line per
    running cell, each cut to the terminal's width); a log line first erases them. Elsewhere (a log
    file, a pipe) the status lines are printed as plain lines at most every ``every_s`` seconds.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self.clock = clock
        self._drawn = 0
        self._last: float | None = None

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K" + "\x1b[1A\x1b[K" * (self._drawn - 1))
            self._drawn = 0

    def log(self, message: str) -> None:
        if self.tty:
            self._clear()
        self.stream.write(message + "\n")
        self.stream.flush()

    def show(self, lines: list[str]) -> None:
        if self.tty:
            width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
            self._clear()
            if lines:
                self.stream.write("\n".join(line[:width] for line in lines))
                self._drawn = len(lines)
            self.stream.flush()
            return
        now = self.clock()
        if self._last is None:
            self._last = now  # the start lines were just printed: the first status comes every_s later
            return
        if lines and now - self._last >= self.every_s:
            self._last = now
            for line in lines:
                self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._clear()
            self.stream.flush()


class SweepRun:
    """One invocation of a sweep, phase by phase (see the module docstring; :func:`run_sweep` runs them):

    - :meth:`register`: the sweep and its cells in the store, and which cells are left to run;
    - :meth:`claim`: the next cells claimed in the store and started on the executor (a cell sharing a warm
      start that another running cell computes waits for it; a cell an older sweep's processes still hold
      waits for them);
    - :meth:`record`: each outcome the executor reports, written to the store;
    - :meth:`show`: the live lines of the running cells;
    - :meth:`summarise`: the summary, recorded and returned; :meth:`give_back` instead when interrupted.

    Options are :func:`run_sweep`'s."""

    def __init__(self, suite: Suite, store: Store, executor: Executor, *, retry_failed: bool = False,
                 cell_timeout: float | None = None, threads: int = 1, plugins: list[str] | None = None,
                 log: Callable[[str], None] = print, status: Callable[[list[str]], None] | None = None,
                 poll_s: float = 1.0, cache: str | None = None, resume_cells: bool = True,
                 linger_s: float = 30.0) -> None:
        self.t0 = time.perf_counter()
        self.suite, self.store, self.executor = suite, store, executor
        self.retry_failed, self.threads, self.plugins = retry_failed, threads, list(plugins or [])
        self.log, self.status, self.poll_s, self.resume_cells, self.linger_s = log, status, poll_s, resume_cells, linger_s
        self.timeout = cell_timeout if cell_timeout is not None else suite.cell_timeout
        if cache is None and not getattr(executor, "remote_cluster", False):
            # this process's $HARNESS_CACHE, not the one a long-lived fork server was started with
            cache = "off" if cache_disabled() else str(cache_root().resolve())
        self.cache = cache
        self.owner = owner_token()
        self.summary = SweepSummary(suite.id, suite.n_cells)
        self.run_id: int | None = None
        self.n_todo = 0
        # The cells stream from the suite: only a window of the next LOOKAHEAD cells to run is held, plus the
        # running ones (their numbers, for the [i/N] tags, only while held).
        self.todo: Iterator[SweepCell] = iter(())
        self.number: dict[str, int] = {}
        self.taken = 0
        self.pending: list[SweepCell] = []
        self.running: dict[str, tuple[SweepCell, float]] = {}
        self.warming: set[str] = set()  # prefixes whose first cell is running (its warm start is not cached yet)
        self.warmed: set[str] = set()
        self.lingering: dict[str, float] = {}  # cell id -> when it was first found lingering
        self.waiting: list[SweepCell] = []  # lingering cells, tried again after the next poll
        self.last_beat = time.monotonic()

    def run(self) -> SweepSummary:
        """Every phase, the loop of claim / record / show until no cell is left; see the class docstring."""
        self.register()
        try:
            while self.refill() or self.pending or self.running or self.waiting:  # refill() only tops up
                self.claim()
                if self.waiting and not self.running and not self.pending:
                    time.sleep(self.poll_s)  # only lingering cells left: wait for the old processes to go
                self.beat()
                self.record()
                self.show()
        except BaseException:
            self.give_back()
            raise
        return self.summarise()

    # -- phases ------------------------------------------------------------------------------------------------
    def register(self) -> None:
        """Record the sweep, its cells (new ones ``pending``), its leaderboard settings and this run; count
        what is done or failed already and keep a byte per cell saying whether it runs now."""
        suite, store, summary = self.suite, self.store, self.summary
        store.add_sweep(suite.id, suite.name, str(suite.path) if suite.path else None, suite.data,
                        (c.row() for c in suite.iter_cells()))
        store.save_leaderboard_settings(suite.id, suite_settings(suite, get_host().registry))
        self.run_id = store.start_run(suite.id, self.executor.name)
        # which cells to run, by position in the suite (one byte a cell, not the cells): a snapshot of the store
        to_run = bytearray(suite.n_cells)
        for pos, st in enumerate(store.sweep_statuses(suite.id)):
            if st == "done":
                summary.skipped_done += 1
            elif st == "failed" and not self.retry_failed:
                summary.skipped_failed += 1
            else:
                to_run[pos] = 1
        self.n_todo = suite.n_cells - summary.skipped_done - summary.skipped_failed
        self.todo = (c for pos, c in enumerate(suite.iter_cells()) if to_run[pos])
        self.log(f"sweep {suite.id}: {suite.n_cells} cells, {self.n_todo} to run, {summary.skipped_done} already done"
                 + (f", {summary.skipped_failed} failed earlier (--retry-failed reruns them)"
                    if summary.skipped_failed else "")
                 + f"; executor {self.executor.name}"
                 + (", workers reused across cells" if getattr(self.executor, "reuse", False) else "")
                 + (f", cell timeout {self.timeout:g} s" if self.timeout else ""))

    def claim(self) -> None:
        """While the executor has room: the next cell that may start, claimed in the store and submitted."""
        if self.waiting:
            self.pending += self.waiting
            self.waiting.clear()
        self.refill()
        while self.pending and self.executor.capacity() > 0:
            c = self.pick()
            if c is None:
                break
            self.pending.remove(c)
            if self.claim_one(c):
                self.start(c)

    def record(self) -> None:
        """The outcomes of the cells that ended since the last poll (about ``poll_s``), each written to the
        store (``done`` with its record, its checkpoint folder then deleted; or ``failed`` with the reason)."""
        store, summary, log = self.store, self.summary, self.log
        for cid, outcome in self.executor.poll(self.poll_s):
            c, started = self.running[cid]
            if c.prefix is not None:
                self.warming.discard(c.prefix)
                self.warmed.add(c.prefix)
            wall = float(outcome.get("wall_s") or time.perf_counter() - started)
            add_stats(summary.cache, outcome.get("cache"))
            if outcome.get("status") == "done":
                record = outcome["record"]
                store.finish(cid, record, wall_s=wall)
                if not (record.get("config", {}).get("train") or {}).get("keep_checkpoint"):
                    shutil.rmtree(cell_dir(store, cid) / "checkpoint", ignore_errors=True)  # results are stored
                summary.done += 1
                warm = record.get("warm_start", "none")
                summary.warm_start[warm if warm in summary.warm_start else "none"] += 1
                log(f"{self.tag(c)} done   {c.id}  {c.label}  {c.config.benchmark}  seed={c.config.seed}  "
                    f"{wall:.1f} s  (warm start: {warm})")
            else:
                error = str(outcome.get("error") or "unknown error")
                store.fail(cid, error, wall_s=wall)
                worker_log = cell_dir(store, cid) / "worker.log"
                if worker_log.is_file() and str(worker_log) not in error:  # the full traceback is there
                    error += f" (full log: {worker_log})"
                summary.failed += 1
                summary.failures.append((cid, c.label, error))
                log(f"{self.tag(c)} FAILED {c.id}  {c.label}  {c.config.benchmark}  seed={c.config.seed}  "
                    f"{wall:.1f} s: {error}")
            self.number.pop(cid, None)
            del self.running[cid]  # recorded (until then an error, e.g. a full disk, gives it back below)

    def show(self) -> None:
        """The live line of each running cell (from its ``progress.json``) to ``status``."""
        if self.status is not None:
            now = time.perf_counter()
            self.status([f"{self.tag(c)} {c.label}  {c.config.benchmark}  seed={c.config.seed}  "
                         + progress_text(read_status(cell_dir(self.store, cid)), now - started)
                         for cid, (c, started) in self.running.items()])

    def summarise(self) -> SweepSummary:
        """Close the executor; record and return the summary (with the cells another sweep has done since)."""
        self.executor.close()
        summary = self.summary
        summary.wall_s = time.perf_counter() - self.t0
        if summary.busy:  # cells another sweep ran may have finished since: count what the store holds now
            summary.done_now = sum(st == "done" for st in self.store.sweep_statuses(self.suite.id))
        self.store.end_run(self.run_id, summary.as_dict())
        return summary

    def give_back(self) -> None:
        """Interrupted (Ctrl-C, an error): kill what runs, give its cells back, end the run's row as
        interrupted. Never raises: the next sweep takes over whatever could not be given back."""
        self.executor.close()
        for cid in list(self.running):
            try:
                self.store.release(cid, self.owner)
            except Exception:  # noqa: BLE001, S110 - e.g. a full disk: the next sweep takes the cell over
                pass
        try:  # the run's row ends too (finished_at set, marked interrupted)
            self.summary.wall_s = time.perf_counter() - self.t0
            self.store.end_run(self.run_id, {**self.summary.as_dict(), "interrupted": True})
        except Exception:  # noqa: BLE001, S110 - the next sweep marks it interrupted (Store.start_run)
            pass

    # -- steps of the phases -----------------------------------------------------------------------------------
    def refill(self) -> None:
        """Top up the window of cells to run to ``LOOKAHEAD`` from the suite's stream."""
        while len(self.pending) < LOOKAHEAD:
            c = next(self.todo, None)
            if c is None:
                return
            self.taken += 1
            self.number[c.id] = self.taken
            self.pending.append(c)

    def pick(self) -> SweepCell | None:
        """The first held cell whose warm start no running cell is computing (else the first, when none runs)."""
        self.refill()
        for c in self.pending:
            if c.prefix is None or c.prefix in self.warmed or c.prefix not in self.warming:
                return c
        return self.pending[0] if self.pending and not self.running else None

    def claim_one(self, c: SweepCell) -> bool:
        """Claim ``c`` in the store; False (counted and logged, or put back to wait) when it can't run now."""
        store, summary = self.store, self.summary
        claim = store.claim(c.id, self.owner, retry_failed=self.retry_failed)
        if claim == "claimed" and folder_in_use(cell_dir(store, c.id)):
            store.release(c.id, self.owner)
            claim = "lingering"  # a process of an older sweep still runs in the folder
        if claim == "lingering":
            if c.id not in self.lingering:
                self.lingering[c.id] = time.monotonic()
                self.log(f"{self.tag(c)} wait   {self.describe(c)}  (the processes of the sweep that ran it are "
                         f"not gone yet)")
            if time.monotonic() - self.lingering[c.id] < self.linger_s:
                self.waiting.append(c)
                return False
            claim = "busy"
        if claim == "claimed":
            return True
        if claim == "busy":
            summary.busy += 1
        elif claim == "done":
            summary.skipped_done += 1
        else:
            summary.skipped_failed += 1
        self.log(f"{self.tag(c)} skip   {self.describe(c)}  "
                 f"({'running in another sweep' if claim == 'busy' else claim})")
        self.number.pop(c.id, None)
        return False

    def start(self, c: SweepCell) -> None:
        """Submit a claimed cell to the executor and note its worker in the store."""
        if c.prefix is not None and c.prefix not in self.warmed:
            self.warming.add(c.prefix)
        self.executor.submit(Task(id=c.id, base_id=c.base_id, config=c.config.to_dict(),
                                  cell_dir=str(cell_dir(self.store, c.id)), plugins=list(self.plugins),
                                  threads=self.threads, timeout=self.timeout, cache=self.cache,
                                  resume=self.resume_cells, sweep_owner=self.owner, label=c.label))
        self.running[c.id] = (c, time.perf_counter())
        worker = getattr(self.executor, "worker", None)
        token = worker(c.id) if worker is not None else None
        if token:
            self.store.set_worker(c.id, self.owner, token)
        self.log(f"{self.tag(c)} start  {self.describe(c)}")

    def beat(self) -> None:
        """While cells run, the owner's heartbeat in the store every ``HEARTBEAT_S``."""
        if self.running and time.monotonic() - self.last_beat >= HEARTBEAT_S:
            self.store.beat(self.owner)
            self.last_beat = time.monotonic()

    def tag(self, c: SweepCell) -> str:
        return f"[{self.number[c.id]:>{len(str(self.n_todo))}}/{self.n_todo}]"

    @staticmethod
    def describe(c: SweepCell) -> str:
        return f"{c.id}  {c.config.model}  {c.label}  {c.config.benchmark}  seed={c.config.seed}"


def run_sweep(suite: Suite, store: Store, executor: Executor, *, retry_failed: bool = False,
              cell_timeout: float | None = None, threads: int = 1, plugins: list[str] | None = None,
              log: Callable[[str], None] = print, status: Callable[[list[str]], None] | None = None,
              poll_s: float = 1.0, cache: str | None = None, resume_cells: bool = True,
              linger_s: float = 30.0) -> SweepSummary:
    """Run every cell of ``suite`` that is not done yet (:class:`SweepRun`'s phases); see the module docstring.

    ``log`` gets the sweep's lines (start, done, failed); ``status`` the live lines of the running
    cells after every poll (about every ``poll_s``; see :class:`LiveStatus`). ``cache``: the cache folder for
    the workers, ``"off"``, or None (their ``$HARNESS_CACHE``). ``resume_cells``: cells checkpoint each
    round in their folder and resume from it. ``linger_s``: how long a cell whose previous owner is gone
    but whose old processes still run (or hold its folder's lock) is waited for before it counts as busy.
    ``retry_failed``, ``cell_timeout`` (default: the suite's), ``threads`` (per worker), ``plugins`` (ad-hoc
    ``--plugin`` specs for the workers)."""
    return SweepRun(suite, store, executor, retry_failed=retry_failed, cell_timeout=cell_timeout, threads=threads,
                    plugins=plugins, log=log, status=status, poll_s=poll_s, cache=cache, resume_cells=resume_cells,
                    linger_s=linger_s).run()


def suite_settings(suite: Suite, registry: Any | None = None) -> dict[str, Any]:
    """What a sweep stores for its leaderboard: the suite's ``[leaderboard]`` table plus the metric
    declarations of every benchmark its cells train or evaluate on (``declared``)."""
    settings: dict[str, Any] = dict(suite.leaderboard)
    names: set[str] = set(suite.benchmarks)  # gathered at expansion (each cell's benchmark and evals)
    declared: dict[str, list[dict[str, Any]]] = {}
    if registry is not None:
        for name in sorted(names):
            spec = registry.specs["benchmark"].get(name)
            if spec is not None and getattr(spec, "metrics", ()):
                declared[name] = [dataclasses.asdict(m) for m in spec.metrics]
    settings["declared"] = declared
    return settings
