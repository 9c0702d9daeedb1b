"""One progress layer for all long work (tqdm, on stderr): loading and converting models, sampling,
reference scoring, training, evaluation (items done/total with ETA), judging and sandbox scoring.

Status goes to stderr, data to stdout, so ``harness ... --json | jq`` works while bars run. ``--quiet``
(every command, or ``harness --quiet``) turns bars and transient phase lines off (:func:`set_quiet`);
log lines (:func:`log`: a round's metrics, cache counts) still print to stderr; so does
``HARNESS_QUIET=1``, which sweep workers inherit. The pieces:

- :func:`bar` -- a tqdm bar (``leave=False``: it disappears when done);
- :func:`phase` -- a context manager for work without a count (loading, converting): one line when it
  starts and, if it took longer than a second, one when it ends, with the time;
- :class:`Items` -- the callback an :class:`~harness.core.context.EvalContext` hands benchmarks
  (``ctx.report(done, total, what="generating")``): one bar per ``what``, absolute counts, ETA;
- :class:`CountingEngine` -- wraps an engine so each ``generate`` call advances the evaluation's bar
  by the prompts it answered (benchmarks that never call ``ctx.report`` still show progress).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm
from tqdm.std import tqdm as _std_tqdm

# tqdm's default write lock holds a multiprocessing RLock: in a sweep worker (started by the fork server, so
# its default start method is not "fork") that is a named semaphore registered with the resource tracker,
# and a worker that is killed (Ctrl-C, a timeout) leaves it behind: "resource_tracker: There appear to be 1
# leaked semaphore objects" at shutdown. The harness's bars never span processes: a thread lock is enough.
_std_tqdm.set_lock(threading.RLock())

_QUIET = [os.environ.get("HARNESS_QUIET", "").strip().lower() in ("1", "true", "yes")]


def set_quiet(quiet: bool) -> None:
    """Turn every bar and phase line off (on) for this process and the workers it starts."""
    _QUIET[0] = bool(quiet)
    if quiet:
        os.environ["HARNESS_QUIET"] = "1"
    else:
        os.environ.pop("HARNESS_QUIET", None)


def quiet() -> bool:
    return _QUIET[0]


def status(message: str) -> None:
    """One transient status line on stderr (a phase starting or ending); nothing when quiet."""
    if not _QUIET[0]:
        tqdm.write(message, file=sys.stderr)


def log(message: str) -> None:
    """One log line on stderr (a round's metrics, cache counts), printed around any live bar; also when
    quiet (``--quiet`` removes bars and transient lines, not results)."""
    tqdm.write(message, file=sys.stderr)


def bar(total: int | None = None, desc: str = "", unit: str = "it", *, disable: bool = False,
        **kwargs: Any) -> tqdm:
    """A progress bar on stderr; disabled when quiet (or ``disable``)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                mininterval=0.5, disable=disable or _QUIET[0], **kwargs)


@contextlib.contextmanager
def phase(what: str, *, min_report_s: float = 1.0) -> Iterator[None]:
    """``what...`` on stderr when it starts, ``what: 12.3 s`` when it ends (if it took ``min_report_s``)."""
    status(f"{what} ...")
    t0 = time.perf_counter()
    yield
    took = time.perf_counter() - t0
    if took >= min_report_s:
        status(f"{what}: {took:.1f} s")


class Items:
    """Per-item progress of an evaluation: ``items(done, total, what="generating")``; one bar per ``what``."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bars: dict[str, tqdm] = {}

    def _bar(self, what: str, total: int | None) -> tqdm:
        b = self.bars.get(what)
        if b is None:
            b = self.bars[what] = bar(total, desc=f"{self.desc} {what}".strip(), unit="item")
        return b

    def __call__(self, done: int, total: int | None = None, what: str = "") -> None:
        b = self._bar(what, total)
        if total is not None and b.total != total:
            b.total = total
        b.update(max(0, done - b.n))

    def add(self, n: int, what: str = "") -> None:
        b = self._bar(what, None)
        b.update(n)

    def close(self) -> None:
        """Close the bars, leaving one line per bar: ``eval gsm8k-chat: 4/4 items, 12.3 s``."""
        for b in self.bars.values():
            elapsed = b.format_dict.get("elapsed", 0.0)
            b.close()
            if b.n:
                status(f"{b.desc}: {b.n}{f'/{b.total}' if b.total else ''} items, {elapsed:.1f} s")
        self.bars.clear()


class CountingEngine:
    """An engine whose ``generate`` also advances an :class:`Items` bar by the prompts it answered."""

    def __init__(self, engine: Any, items: Items) -> None:
        self._engine, self._items = engine, items

    def generate(self, prompts: Any, *args: Any, **kwargs: Any) -> Any:
        out = self._engine.generate(prompts, *args, **kwargs)
        if "" not in self._items.bars or self._items.bars[""].total is None:  # the benchmark reports no totals
            self._items.add(len(prompts), "generated")
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)
