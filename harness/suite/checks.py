"""Range and sanity checks run once, before any cell starts (one-line errors, exit 2).

- :func:`check_suite_data`: the ranges of :mod:`harness.cell.checks` on a parsed suite, naming the key that
  set the value, and the grid's size counted before anything is built (:func:`count_cells`, over
  ``max_cells`` is an error asking for ``--max-cells``).
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

from harness.cell.checks import bounded, check_seed, check_train_value
from harness.core.errors import HarnessError
from harness.suite.parse import _Where

MAX_CELLS = 10_000


# -- suites --------------------------------------------------------------------------------------------------


def _where(file: str, keys: Iterable[Any], touched: set[str]) -> str:
    dotted = ".".join(str(k) for k in keys)
    for t in touched:
        if dotted == t or dotted.startswith(t + "."):
            return f"{file} (--set {t}): {dotted}"
    return f"{file}: {dotted}"


def check_suite_data(data: Mapping[str, Any], path: Path | None, touched: set[str] | None = None, *,
                     max_cells: int | None = MAX_CELLS) -> int:
    """Ranges of a parsed suite's train values and seeds, and its size; returns the number of cells (an
    upper bound: before exclude rules). Values of the wrong type are left to :func:`harness.suite.expand.expand`."""
    file = str(path) if path is not None else "<suite>"
    touched = touched or set()

    def w(*keys: Any) -> str:
        return _where(file, keys, touched)

    def train_table(table: Any, *keys: Any) -> None:
        if isinstance(table, Mapping):
            for k, v in table.items():
                check_train_value(k, v, w(*keys, k))

    def seeds_of(value: Any, *keys: Any) -> None:
        for s in value if isinstance(value, list) else [value]:
            check_seed(s, w(*keys))

    train_table(data.get("train"), "train")
    seeds_of(data.get("seeds", [0]), "seeds")
    methods = data.get("methods")
    if isinstance(methods, Mapping):
        for name, entry in methods.items():
            if not isinstance(entry, Mapping):
                continue
            train_table(entry.get("train"), "methods", name, "train")
            grid = entry.get("grid")
            if isinstance(grid, Mapping) and isinstance(grid.get("train"), Mapping):
                for k, values in grid["train"].items():
                    for v in values if isinstance(values, list) else [values]:
                        check_train_value(k, v, w("methods", name, "grid", "train", k))
    includes = data.get("include")
    if isinstance(includes, list):
        for i, rule in enumerate(includes):
            if isinstance(rule, Mapping):
                for k, v in rule.items():
                    if bounded(k):
                        check_train_value(k, v, w(f"include[{i}]", k))
                if "seed" in rule:
                    seeds_of(rule["seed"], f"include[{i}]", "seed")
    n = count_cells(data)
    if max_cells is not None and n > max_cells:
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
