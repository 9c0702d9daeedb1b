"""Suite files: TOML that expands into sweep cells, validated as a whole before any training.

Three steps, three modules: reading the file and ``--set`` (:mod:`harness.suite.parse`), validating
every key into a plan (:mod:`harness.suite.plan`), and here expanding the plan into cells: a small
suite keeps its list, a big one only the cells' ids, and :meth:`Suite.iter_cells` streams them again.
The format (every key, labels, ``--set``) is documented in ``docs/plugins.md``, section "Suite files";
``suites/quickstart.toml`` is a worked example. Requires Python 3.11's ``tomllib``, or the ``tomli`` package on 3.10.
"""

from __future__ import annotations

import itertools
import json
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.digest import Hasher, digest
from harness.core.errors import HarnessError
from harness.core.params import as_dict
from harness.core.plugins import PluginHost
from harness.suite.parse import _table, _Where, apply_sets, make_label, read_suite
from harness.suite.plan import SuitePlan, _include, _matches, plan_suite

KEEP_CELLS = 2_000  # suites up to this many cells (counted before exclude rules) keep their cell list


@dataclass(frozen=True)
class SweepCell:
    """One expanded cell: its config, its label in the suite, and its identity."""

    config: Any  # harness.cell.run.CellConfig
    label: str
    entry: str
    base_id: str  # ResolvedCell.cell_id: resolved config + harness version + plugin source hashes
    id: str  # base_id + versions (and source hashes) of the plugins that run it
    resolved: dict[str, Any]
    plugins: dict[str, str | None]
    prefix: str | None  # cells with the same prefix share a cached warm start (None: no warm start)

    def row(self) -> dict[str, Any]:
        """What the store records about the cell."""
        return {"id": self.id, "base_id": self.base_id, "config": self.resolved, "plugins": self.plugins,
                "label": self.label}


@dataclass
class Suite:
    """A validated suite. Its cells are produced on demand (:meth:`iter_cells`), in the same order and with
    the same ids every time; what commands need about all of them (count, sweep id, labels, models,
    benchmarks) is computed from one pass at expansion, without keeping the cells (above
    :data:`KEEP_CELLS` cells; smaller suites keep their list, it costs little and saves re-expanding)."""

    path: Path | None
    name: str
    data: dict[str, Any]
    id: str  # the sweep id: name + hash of the sorted cell ids (re-running the same suite resumes it)
    n_cells: int
    produce: Callable[[], Iterator[SweepCell]]  # regenerates the cells from the axes
    labels: frozenset[str] = frozenset()  # the distinct method labels (one per grid point, not per cell)
    models: frozenset[str] = frozenset()
    benchmarks: frozenset[str] = frozenset()  # trained and evaluated on, by name
    widest: tuple[str, str, str, int] = ("", "", "", 0)  # widest model, label, benchmark; largest seed
    warnings: list[str] = field(default_factory=list)
    kept: list[SweepCell] | None = None  # the cells of a small suite, else None (they stream)
    touched: set[str] = field(default_factory=set)  # the dotted keys --set gave (errors name --set for them)

    def iter_cells(self) -> Iterator[SweepCell]:
        """The cells one at a time, in the suite's order (models, seeds, benchmarks, methods, grid; then the
        includes), each id once."""
        if self.kept is not None:
            yield from self.kept
        else:
            yield from self.produce()

    @property
    def cells(self) -> list[SweepCell]:
        """Every cell in a list. This MATERIALISES the whole grid (about 4 KB a cell): for tests and small
        suites; the commands use :meth:`iter_cells`."""
        return list(self.iter_cells())

    @property
    def cell_timeout(self) -> float | None:
        return self.data.get("cell_timeout")

    @property
    def resources(self) -> dict[str, float]:
        return dict(self.data.get("resources", {}))

    @property
    def leaderboard(self) -> dict[str, Any]:
        return dict(self.data.get("leaderboard", {}))


# -- expansion ---------------------------------------------------------------------------------------------


def load_suite(path: str | os.PathLike[str], host: PluginHost, sets: Iterable[str] = (), *,
               max_cells: int | None = None) -> Suite:
    """Read, override, validate and expand a suite file. The grid is counted before it is built: over
    ``max_cells`` (default :data:`harness.suite.checks.MAX_CELLS`) is an error."""
    from harness.suite import checks

    p = Path(path)
    data, touched = apply_sets(read_suite(p), sets)
    suite = expand(data, host, path=p, touched=touched, max_cells=max_cells or checks.MAX_CELLS)
    suite.touched = set(touched)
    checks.check_suite(suite)
    return suite


def rebase_paths(data: dict[str, Any], suite_file: Path,
                 touched: set[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Data paths written in a suite file are relative to the suite's folder: ``train_data`` entries that are
    files, ``data.path`` and ``benchmark_params.<b>.path`` / ``.data``. Each becomes that path as seen from the
    current directory (relative, so the cells' ids do not depend on where the checkout lives). A path found only
    from the current directory is kept, with a warning (returned with the data). ``--set`` values (the
    dotted keys in ``touched``) are not rebased: they are relative to the current directory, as on any command
    line."""
    import os

    base = suite_file.parent
    warnings: list[str] = []

    given = touched or set()

    def rebase(value: Any, where: str) -> Any:
        dotted = where.split("[", 1)[0]
        if any(dotted == t or dotted.startswith(t + ".") or t.startswith(dotted + ".") for t in given):
            return value  # from --set: relative to the current directory
        if not isinstance(value, str) or not value or value.startswith(("hf:", "~")) or Path(value).is_absolute():
            return value
        if "/" not in value and "\\" not in value and not Path(value).suffix:
            return value  # a dataset or benchmark name
        there = base / value
        if there.exists():
            return os.path.relpath(there)
        if Path(value).exists():
            warnings.append(f"{suite_file}: {where} = {value!r} was found from the current directory, not from the "
                            f"suite's folder; write it relative to {base}")
        return value

    out = dict(data)
    if isinstance(out.get("train_data"), list):
        out["train_data"] = [rebase(v, f"train_data[{i}]") for i, v in enumerate(out["train_data"])]
    if isinstance(out.get("data"), dict) and "path" in out["data"]:
        out["data"] = {**out["data"], "path": rebase(out["data"]["path"], "data.path")}
    if isinstance(out.get("benchmark_params"), dict):
        params = {}
        for bench, table in out["benchmark_params"].items():
            if isinstance(table, dict):
                table = {k: rebase(v, f"benchmark_params.{bench}.{k}") if k in ("path", "data") else v
                         for k, v in table.items()}
            params[bench] = table
        out["benchmark_params"] = params
    return out, warnings


def expand(data: dict[str, Any], host: PluginHost, *, path: Path | None = None,
           touched: set[str] | None = None, keep_cells: int | None = None, max_cells: int | None = None) -> Suite:
    """Validate a parsed suite (each value once, :func:`harness.suite.plan.plan_suite`), count its grid (over
    ``max_cells`` is an error) and expand it; any problem is one HarnessError naming the key. Every cell is
    built once here from the plan's typed values, but a suite of more than ``keep_cells`` (default
    :data:`KEEP_CELLS`) cells keeps only their ids, as 64-bit integers: :meth:`Suite.iter_cells` builds them
    again, one at a time."""
    path_warnings: list[str] = []
    if path is not None:  # data paths in the file are relative to its folder
        data, path_warnings = rebase_paths(data, Path(path), touched)
    plan = plan_suite(data, host, path=path, touched=touched)
    plan.warnings[:0] = path_warnings
    from harness.suite.checks import check_size, count_cells

    check_size(data, path, max_cells=max_cells)

    tally = _Tally()
    repeats: list[str] = []
    if count_cells(data) <= (KEEP_CELLS if keep_cells is None else keep_cells):  # small: keep the list (one pass, as before)
        cells: list[SweepCell] = []
        seen: dict[str, str] = {}
        for cell, label, ename in _kept(plan, host, plan.hits):
            sc = _sweep_cell(cell, label, ename, host)
            if sc.id in seen:
                if seen[sc.id] != label:
                    repeats.append(f"{plan.w('methods', ename)}: cell {sc.id} ({label}) repeats {seen[sc.id]}; kept once")
                continue
            seen[sc.id] = label
            cells.append(sc)
            tally.add(sc)
        ids = sorted(seen)
        dups: frozenset[str] = frozenset()
    else:  # large: one validating pass that keeps 8 bytes per cell (its id), none of the cells
        cells = None  # type: ignore[assignment]
        raw = array("Q")
        from harness.core.progress import bar

        # a big grid takes minutes to validate: a bar (cells done of the grid, ETA) shows it from the start
        with bar(count_cells(data), desc="validating the grid", unit="cell", mininterval=1.0) as shown:
            for cell, label, ename in _kept(plan, host, plan.hits):
                sc = _sweep_cell(cell, label, ename, host)
                raw.append(int(sc.id, 16))
                tally.add(sc)
                shown.update(1)
        ids, dups = _unique_ids(raw)
        del raw
        if dups:  # rare (an include repeating a grid cell): a second pass for the warnings and the labels
            tally = _Tally()
            first: dict[str, str] = {}
            for sc in _dedup_warn(_kept(plan, host, None), dups, first, repeats, plan.w, host):
                tally.add(sc)
    warnings = plan.warnings + repeats
    if not tally.n:
        raise HarnessError(f"{plan.w.file}: the suite expands to no cells (every cell is excluded)")
    sweep_id = f"{plan.name}-{_ids_hash(ids)}"
    return Suite(path=path, name=plan.name, data=data, id=sweep_id, n_cells=tally.n, produce=lambda: _produce(plan, host, dups),
                 labels=frozenset(tally.labels), models=frozenset(tally.models),
                 benchmarks=frozenset(tally.benchmarks), widest=tally.widest(), warnings=warnings, kept=cells)


def _kept(plan: SuitePlan, host: PluginHost, counts: list[int] | None) -> Iterator[tuple[Any, str, str]]:
    """(resolved cell, label, entry) of every cell the exclude rules keep, then of the includes, in the
    suite's order; duplicates not yet dropped. ``counts``: the validating pass, which counts the
    exclude rules' hits into it and warns about rules that match nothing; every pass raises the same
    first error (strict types, needs/provides) as building the whole list would."""
    w, entries, rules = plan.w, plan.entries, plan.rules
    deferred: HarnessError | None = None  # an exclude rule's error: raised after every grid cell resolved
    for model in plan.models:
        for seed in plan.seeds:
            for bench in plan.benches:
                for e in entries.values():
                    if (e.name, bench) in plan.unfit:
                        continue
                    for combo in itertools.product(*[range(len(vals)) for *_, vals in e.axes]):
                        chosen = [(scope, k, raw[i], typed[i]) for (scope, k, raw, typed), i in
                                  zip(e.axes, combo, strict=True)]
                        mover = {k: v for scope, k, _, v in chosen if scope == "method"}
                        tover = {k: v for scope, k, _, v in chosen if scope == "train"}
                        label = plan.data_label(make_label(e.name, {k: v for _, k, v, _ in chosen}), bench)
                        cell = plan.cell(e, model, bench, seed, mover, tover, {}, where=w("methods", e.name))
                        cfg = cell.config
                        if deferred is not None:
                            continue
                        drop = False
                        try:
                            for i, rule in enumerate(rules):
                                if _matches(_table(rule, w(f"exclude[{i}]")), (cfg, cell, label, e.name, "grid"),
                                            w(f"exclude[{i}]"), entries):
                                    if counts is not None:
                                        counts[i] += 1
                                    drop = True
                        except HarnessError as exc:
                            deferred = exc
                            continue
                        if not drop:
                            yield cell, label, e.name
    if deferred is not None:
        raise deferred
    if counts is not None:
        for i, n in enumerate(counts):
            if n == 0:
                plan.warnings.append(f"{w(f'exclude[{i}]')}: matches no cell")
    if not isinstance(plan.includes, list):
        raise HarnessError(f"{w('include')}: expected [[include]] tables, got {plan.includes!r}")
    for i, rule in enumerate(plan.includes):
        yield from _include(_table(rule, w(f"include[{i}]")), w(f"include[{i}]"), plan)


def _produce(plan: SuitePlan, host: PluginHost, dups: frozenset[str]) -> Iterator[SweepCell]:
    """The cells, each id once (``dups``: the ids that occur more than once; the first is kept)."""
    seen: set[str] = set()
    for cell, label, ename in _kept(plan, host, None):
        sc = _sweep_cell(cell, label, ename, host)
        if sc.id in dups:
            if sc.id in seen:
                continue
            seen.add(sc.id)
        yield sc


class _Tally:
    """What the commands need about every cell, gathered in one pass: count, labels, models, benchmarks,
    the widest values (for the dry-run table)."""

    def __init__(self) -> None:
        self.n = 0
        self.labels: set[str] = set()
        self.models: set[str] = set()
        self.benchmarks: set[str] = set()
        self.wide = ["", "", ""]
        self.seed = 0

    def add(self, sc: SweepCell) -> None:
        self.n += 1
        self.labels.add(sc.label)
        self.models.add(sc.config.model)
        self.benchmarks.add(sc.resolved["benchmark"])
        self.benchmarks.update(e[0] for e in sc.resolved.get("evals", []) or [])
        for i, v in enumerate((sc.config.model, sc.label, sc.config.benchmark)):
            if len(v) > len(self.wide[i]):
                self.wide[i] = v
        self.seed = max(self.seed, sc.config.seed)

    def widest(self) -> tuple[str, str, str, int]:
        return (self.wide[0], self.wide[1], self.wide[2], self.seed)


def _unique_ids(raw: array[int]) -> tuple[Any, frozenset[str]]:
    """The sorted distinct ids (as 64-bit integers) and the ids that occur more than once (as strings)."""
    import numpy as np

    values, counts = np.unique(np.frombuffer(raw, dtype=np.uint64), return_counts=True)
    return values, frozenset(f"{int(v):016x}" for v in values[counts > 1])


def _ids_hash(ids: Any) -> str:
    """sha256 of ``json.dumps(sorted(cell ids))`` (8 hex digits), computed without building that string.
    ``ids``: sorted 16-digit hex strings, or the same ids as sorted 64-bit integers."""
    h = Hasher(b"[")
    for start in range(0, len(ids), 4096):
        chunk = ids[start:start + 4096]
        text = ", ".join(f'"{v}"' if isinstance(v, str) else f'"{int(v):016x}"' for v in chunk)
        h.update(((", " if start else "") + text).encode())
    h.update(b"]")
    return h.hex(8)


def _dedup_warn(items: Iterable[tuple[Any, str, str]], dups: frozenset[str], first: dict[str, str],
                repeats: list[str], w: _Where, host: PluginHost) -> Iterator[SweepCell]:
    """Cells of ``items``, each duplicated id once, with the warning for a repeat under another label."""
    for cell, label, ename in items:
        sc = _sweep_cell(cell, label, ename, host)
        if sc.id in dups:
            if sc.id in first:
                if first[sc.id] != label:
                    repeats.append(f"{w('methods', ename)}: cell {sc.id} ({label}) repeats {first[sc.id]}; kept once")
                continue
            first[sc.id] = label
        yield sc


def plugin_versions(cell: Any, host: PluginHost) -> dict[str, str | None]:
    """Name -> ``"<version> code <hash>"`` of the plugins that registered the cell's method, benchmarks,
    engine and training data (:func:`harness.core.identity.participants`); the hash is of the plugin's source
    files, so editing a plugin changes the ids of its cells (docs/plugins.md, "Identity and caching")."""
    from harness.core.identity import participants

    names = participants(host, cell.method.name, [spec.name for spec, _ in cell.evals], cell.config.engine,
                         cell.benchmark.name if cell.config.train_data else None)
    return {n: f"{host.infos[n].version or '-'} code {host.code_hash(n)}" if n in host.infos else None
            for n in names}


def sweep_cell_id(base_id: str, plugins: Mapping[str, str | None]) -> str:
    """The cell's store id: its resolved config hash extended with the plugin versions."""
    return digest({"cell": base_id, "plugins": dict(sorted(plugins.items()))}, 16)


def _sweep_cell(cell: Any, label: str, ename: str, host: PluginHost) -> SweepCell:
    plugins = plugin_versions(cell, host)
    prefix = None
    if cell.benchmark.warm_start is not None:
        prefix = json.dumps([cell.config.model, cell.config.seed, cell.benchmark.name, cell.benchmark.version,
                             as_dict(cell.benchmark_params), cell.config.dtype, cell.config.device], sort_keys=True)
    return SweepCell(config=cell.config, label=label, entry=ename, base_id=cell.cell_id,
                     id=sweep_cell_id(cell.cell_id, plugins), resolved=cell.resolved_dict(), plugins=plugins,
                     prefix=prefix)
