"""Range and sanity checks run once, before any cell starts (one-line errors, exit 2).

- :func:`check_size`: the grid's size counted before any cell is built (:func:`count_cells`; over
  ``max_cells`` is an error asking for ``--max-cells``). Each value's type and range is checked once, by
  :mod:`harness.suite.plan`, naming the key that set it.
- :func:`check_suite`: the suite's ``leaderboard.baseline`` is a method label of the suite.
- :func:`check_options`: ``--jobs`` / ``--threads`` >= 1, ``--cache`` and the store's folder writable.
- :func:`preflight`: what a cell would otherwise find only when it starts, checked once before a sweep runs
  (not for ``--dry-run``, which validates a suite for other hardware): every model resolvable here (a name, an
  existing path, a real GGUF file, a hub name cached here or a reachable hub) and the device present.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.suite.parse import _Where

MAX_CELLS = 10_000


# -- suites --------------------------------------------------------------------------------------------------


def check_size(data: Mapping[str, Any], path: Path | None, *, max_cells: int | None = MAX_CELLS) -> int:
    """The grid's size, counted before any cell is built (an upper bound: before exclude rules): over
    ``max_cells`` is a one-line error asking for ``--max-cells``. Returns the count."""
    n = count_cells(data)
    if max_cells is not None and n > max_cells:
        file = str(path) if path is not None else "<suite>"
        raise HarnessError(f"{file}: the suite expands to {n:,} cells, over the limit of {max_cells:,}; shrink "
                           f"the grid, or pass --max-cells {n} if you mean it")
    return n


def _length(value: Any, default: int = 1) -> int:
    if value is None:
        return default
    return len(value) if isinstance(value, list) else 1


def count_cells(data: Mapping[str, Any]) -> int:
    """How many cells a parsed suite expands to before exclude rules, without building any: models x
    seeds x benchmarks x (train data sources) x the sum over method entries of their grid's product, plus
    the includes."""
    models = _length(data.get("models"))
    seeds = _length(data.get("seeds", [0]))
    benches = _length(data.get("benchmarks"))
    sources = _length(data.get("train_data"))
    per_entry = 0
    methods = data.get("methods")
    for entry in (methods.values() if isinstance(methods, Mapping) else []):
        n = 1
        grid = entry.get("grid") if isinstance(entry, Mapping) else None
        if isinstance(grid, Mapping):
            for k, values in grid.items():
                if k == "train" and isinstance(values, Mapping):
                    for tv in values.values():
                        n *= max(1, _length(tv))
                else:
                    n *= max(1, _length(values))
        per_entry += n
    total = models * seeds * benches * sources * per_entry
    includes = data.get("include")
    for rule in includes if isinstance(includes, list) else []:
        if isinstance(rule, Mapping):
            total += (_length(rule.get("model"), models) * _length(rule.get("seed"), seeds)
                      * _length(rule.get("benchmark"), benches))
    return total


def baseline_error(baseline: str, labels: Iterable[str], methods: Iterable[str] = ()) -> str | None:
    """Why ``baseline`` names no single method label (as the leaderboard matches it), or None."""
    labels = sorted(set(labels))
    if baseline in labels:
        return None
    matching = [label for label in labels if label.split("(")[0] == baseline]
    if len(matching) == 1:
        return None
    if len(matching) > 1:
        return f"ambiguous, it could be {', '.join(matching)}; give the full label"
    from harness.core.errors import did_you_mean

    return f"no method label of the suite is '{baseline}'{did_you_mean(baseline, labels)}; labels: {', '.join(labels)}"


def check_suite(suite: Any) -> None:
    """Checks that need the expanded suite: the leaderboard's baseline is one of its method labels."""
    board = suite.data.get("leaderboard", {})
    baseline = board.get("baseline") if isinstance(board, Mapping) else None
    if isinstance(baseline, str):
        why = baseline_error(baseline, suite.labels)  # gathered at expansion: the cells are not kept
        if why:
            file = str(suite.path) if suite.path is not None else "<suite>"
            raise HarnessError(f"{file}: leaderboard.baseline = {baseline!r}: {why}")


# -- options and paths ---------------------------------------------------------------------------------------


def check_count(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise HarnessError(f"{flag} {value}: give 1 or more")


def writable_dir(path: Path, what: str, shown: Path | None = None) -> None:
    """New files could be made in ``path`` (created later if missing): its nearest existing ancestor is a
    folder this process can write in (tried with a temporary file, so read-only mounts count); nothing is
    left behind. ``shown``: the path the message names (default ``path``)."""
    shown = shown or path
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise HarnessError(f"{what} {shown}: {probe} is a file, not a folder; give another path")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".harness-write-check-"):
            pass
    except OSError as exc:
        raise HarnessError(f"{what} {shown}: can't write in {probe} ({exc.strerror or exc}); give a writable "
                           f"path") from None


def check_options(*, jobs: int | None, threads: int | None, cache: str | None, store: Path) -> None:
    """The sweep's options, before anything runs: counts >= 1, the cache and the store's folder writable."""
    check_count(jobs, "--jobs")
    check_count(threads, "--threads")
    from harness.core.cache import cache_disabled, cache_root

    if cache is not None and not cache_disabled(cache):
        writable_dir(Path(cache), "--cache")
    elif cache is None and not cache_disabled():
        writable_dir(cache_root(), "$HARNESS_CACHE (the default --cache)")
    if store.is_dir():
        raise HarnessError(f"--store {store}: is a folder; give the results database file, e.g. "
                           f"{store / 'harness.db'}")
    writable_dir(store.parent, "--store", shown=store)
    if store.exists() and not os.access(store, os.W_OK):
        raise HarnessError(f"--store {store}: the file is read-only; give a writable --store")


def preflight(suite: Any) -> None:
    """Models and devices of a suite, checked once before its first cell (see the module docstring)."""
    from harness.models.loading import check_device, check_model

    w = _Where(suite.path, set(getattr(suite, "touched", set())))
    data = suite.data
    models = data.get("models") or []
    for i, model in enumerate(models if isinstance(models, list) else []):
        check_model(model, w("models", i))
    devices = {("device",): data.get("device", "cpu")}
    for name, table in (data.get("methods") or {}).items():  # a method table may set its own device
        if isinstance(table, dict) and isinstance(table.get("device"), str):
            devices[("methods", name, "device")] = table["device"]
    for keys, device in devices.items():
        if isinstance(device, str):
            check_device(device, w(*keys))
