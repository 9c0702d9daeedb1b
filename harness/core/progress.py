"""One progress layer for all long work (tqdm, on stderr): loading and converting models, sampling,
reference scoring, training, evaluation (items done/total with ETA), judging and sandbox scoring.

Status goes to stderr, data to stdout, so ``harness ... --json | jq`` works while bars run. ``--quiet``
(every command, or ``harness --quiet``) turns bars, phase lines and log lines (:func:`log`: a round's
metrics, ``trained``, cache counts) off (:func:`set_quiet`): only warnings (:func:`warn`), errors and the
results (stdout) remain; so does ``HARNESS_QUIET=1``, which sweep workers inherit. The pieces:

- :func:`bar` -- a tqdm bar (``leave=False``: it disappears when done);
- :func:`phase` -- a context manager for work without a count (loading, converting): one line when it
  starts and, if it took longer than a second, one when it ends, with the time;
- :class:`Items` -- the callback an :class:`~harness.core.context.EvalContext` hands benchmarks
  (``ctx.report(done, total, what="generating")``): one bar per ``what``, absolute counts, ETA;
- :class:`CountingEngine` -- wraps an engine so each ``generate`` call advances the evaluation's bar
  while it runs (engines report finished rows and decode steps through :func:`generation_progress`)
  and by the prompts it answered (benchmarks that never call ``ctx.report`` still show progress).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
    """One log line on stderr (a round's metrics, cache counts), printed around any live bar; nothing when
    quiet (the results go to stdout; a warning line still prints)."""
    if message.startswith("warning:"):
        warn(message)
    elif not _QUIET[0]:
        tqdm.write(message, file=sys.stderr)


def warn(message: str) -> None:
    """A warning line on stderr, printed around any live bar, also when quiet."""
    tqdm.write(message, file=sys.stderr)


def clear_bars() -> None:
    """Take down every bar still drawn (an error or an interrupt is about to print: it gets a fresh line)."""
    for b in list(getattr(tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            b.close()


def bar(total: int | None = None, desc: str = "", unit: str = "it", *, disable: bool = False,
        **kwargs: Any) -> tqdm:
    """A progress bar on stderr; disabled when quiet (or ``disable``)."""
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=disable or _QUIET[0], **kwargs)


@contextlib.contextmanager
def phase(what: str, *, min_report_s: float = 1.0) -> Iterator[None]:
    """``what...`` on stderr when it starts, ``what: 12.3 s`` when it ends (if it took ``min_report_s``)."""
    status(f"{what} ...")
    t0 = time.perf_counter()
    yield
    took = time.perf_counter() - t0
    if took >= min_report_s:
        status(f"{what}: {took:.1f} s")


_GENERATION: list[Callable[..., None] | None] = [None]


def generation_progress(done: int, total: int, token: int | None = None, max_tokens: int | None = None) -> None:
    """Engines call this while a ``generate`` call runs: ``done`` of its ``total`` rows finished, and (per
    decode step) ``token`` of ``max_tokens`` of the current batch. A no-op unless an evaluation listens
    (:class:`CountingEngine`), so the evaluation's item counter moves during generation, not after it."""
    sink = _GENERATION[0]
    if sink is not None:
        sink(done, total, token, max_tokens)


class Items:
    """Per-item progress of an evaluation: ``items(done, total, what="generating")``; one bar per ``what``.

    The counts are kept here (also when bars are off: a sweep worker hands them to ``on_change``, which
    writes the cell's live status); the clock runs from the evaluation's start, so the rate and ETA include
    the first, slowest batch. A bar is drawn when the work starts (a generate call, a report), not when
    its first batch ends."""

    def __init__(self, desc: str, on_change: Callable[[int, int | None, str], None] | None = None) -> None:
        self.desc = desc
        self.on_change = on_change
        self.t0 = time.time()
        self.done: dict[str, int] = {}
        self.total: dict[str, int | None] = {}
        self.bars: dict[str, tqdm] = {}
        self._drawn = 0.0

    def _bar(self, what: str) -> tqdm:
        b = self.bars.get(what)
        if b is None:
            b = self.bars[what] = bar(self.total.get(what), desc=f"{self.desc} {what}".strip(), unit="item",
                                      smoothing=0)
            b.start_t = self.t0  # elapsed, rate and ETA from the evaluation's start
        return b

    def _set(self, what: str, done: int, total: int | None, note: str | None = None) -> None:
        if total is not None:
            self.total[what] = total
        total = self.total.get(what)
        if total is not None:
            done = min(done, total)
        changed = self.done.get(what) != done
        self.done[what] = done
        b = self._bar(what)
        if b.total != total:
            b.total = total
        if note is not None:
            b.set_postfix_str(note, refresh=False)
        now = time.monotonic()
        if changed or now - self._drawn >= 0.5:  # a new count at once, a token note every half second
            b.n = done
            b.refresh()
            self._drawn = now
        if changed and self.on_change is not None:
            self.on_change(done, total, what)

    def __call__(self, done: int, total: int | None = None, what: str = "") -> None:
        self._set(what, done, total)

    def add(self, n: int, what: str = "") -> None:
        self._set(what, self.done.get(what, 0) + n, None)

    def close(self) -> None:
        """Close the bars, leaving one line per bar: ``eval gsm8k-chat: 4/4 items, 12.3 s``."""
        took = time.time() - self.t0
        for what, b in self.bars.items():
            b.close()
            done, total = self.done.get(what, 0), self.total.get(what)
            if done or total:
                status(f"{f'{self.desc} {what}'.strip()}: {done}{f'/{total}' if total else ''} items, {took:.1f} s")
        self.bars.clear()


class CountingEngine:
    """An engine whose ``generate`` advances an :class:`Items` bar as it runs: by the rows the engine
    reports finished (:func:`generation_progress`; the bar also shows the decode step of the batch), and
    by the call's prompts when it returns. A benchmark's own ``ctx.report`` then sets the count exactly."""

    def __init__(self, engine: Any, items: Items) -> None:
        self._engine, self._items = engine, items

    def generate(self, prompts: Any, *args: Any, **kwargs: Any) -> Any:
        items, k = self._items, len(prompts)
        base = items.done.get("", 0)
        items._set("", base, None, note="generating")  # drawn now, before the first batch ends

        def listen(done: int, total: int, token: int | None, max_tokens: int | None) -> None:
            note = f"token {token}/{max_tokens}" if token is not None and max_tokens else None
            items._set("", base + (done * k) // max(1, total), None, note=note)

        previous, _GENERATION[0] = _GENERATION[0], listen
        try:
            out = self._engine.generate(prompts, *args, **kwargs)
        finally:
            _GENERATION[0] = previous
        items._set("", base + k, None, note="")
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)
