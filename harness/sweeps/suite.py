"""Suite files: TOML that expands into sweep cells, validated as a whole before any training.

The format (every key, labels, ``--set``) is documented in ``docs/plugins.md``, section "Suite files";
``suites/quickstart.toml`` is a worked example. Requires Python 3.11's ``tomllib``, or the ``tomli`` package on 3.10.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError, did_you_mean
from harness.core.params import apply_overrides, as_dict
from harness.core.plugins import PluginHost

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:  # pragma: no cover
        tomllib = None  # type: ignore[assignment]

TOP_KEYS = (
    "name", "description", "models", "benchmarks", "eval", "seeds", "engine", "dtype", "device", "cell_timeout",
    "jobs", "threads", "train", "data", "benchmark_params", "methods", "exclude", "include", "resources",
    "leaderboard", "train_data", "reward",
)
ENTRY_KEYS = ("method", "train", "grid")
RULE_KEYS = ("method", "benchmark", "model", "seed")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
LEADERBOARD_KEYS = ("metrics", "baseline", "lower_is_better", "higher_is_better", "goals", "diagnostics")
KEEP_CELLS = 2_000  # suites up to this many cells (counted before exclude rules) keep their cell list


@dataclass(frozen=True)
class SweepCell:
    """One expanded cell: its config, its label in the suite, and its identity."""

    config: Any  # harness.sweeps.run.CellConfig
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


# -- reading and overrides ---------------------------------------------------------------------------------


def _toml() -> Any:
    if tomllib is None:  # pragma: no cover
        raise HarnessError("reading suite files needs Python >= 3.11 (tomllib) or `pip install tomli`")
    return tomllib


def read_suite(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a suite file; a syntax error names the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"{p}: no such suite file; suites live in suites/*.toml")
    from harness.sweeps.checks import decode_utf8

    try:
        return _toml().loads(decode_utf8(p.read_bytes(), p))
    except OSError as exc:
        raise HarnessError(f"{p}: can't read the suite file ({exc.strerror or exc})") from None
    except _toml().TOMLDecodeError as exc:
        raise HarnessError(f"{p}: invalid TOML: {exc}; fix the file") from None


def parse_assignment(item: str) -> tuple[str, dict[str, Any]]:
    """``a.b.c=VALUE`` -> (``a.b.c``, nested dict). VALUE is TOML (``[0, 1]``, ``0.2``, ``"x"``) or a bare
    string."""
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise HarnessError(f"--set {item!r}: expected KEY=VALUE, e.g. train.steps=5 or seeds=[0,1]")
    toml = _toml()
    try:
        nested = toml.loads(f"{key} = {value}")
    except toml.TOMLDecodeError as exc:
        if value[:1] in ("[", "{", '"', "'"):  # meant as a list, table or string: not a bare string
            raise HarnessError(f"--set {item!r}: the value is not valid TOML ({exc}); close the brackets or "
                               f"quotes, e.g. seeds=[0,1] or models=[\"tiny:nano\"]") from None
        try:
            nested = toml.loads(f"{key} = {json.dumps(value)}")
        except toml.TOMLDecodeError:
            raise HarnessError(f"--set {item!r}: '{key}' is not a dotted TOML key (quote names with dots: "
                               f"methods.\"dpo-b0.05\".beta=0.1)") from None
    path, node = [], nested
    while isinstance(node, dict) and len(node) == 1:
        k = next(iter(node))
        path.append(k)
        node = node[k]
    return ".".join(path), nested


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def apply_sets(data: dict[str, Any], sets: Iterable[str]) -> tuple[dict[str, Any], set[str]]:
    """Apply ``--set`` assignments to a parsed suite; returns it and the dotted keys they set."""
    touched: set[str] = set()
    for item in sets:
        key, nested = parse_assignment(item)
        data = _merge(data, nested)
        touched.add(key)
    return data, touched


# -- validation helpers -------------------------------------------------------------------------------------


class _Where:
    """Builds ``file: dotted.key`` (or ``--set dotted.key`` when an override set it)."""

    def __init__(self, path: Path | None, touched: set[str]) -> None:
        self.file = str(path) if path is not None else "<suite>"
        self.touched = touched

    def __call__(self, *keys: Any) -> str:
        dotted = ".".join(str(k) for k in keys)
        for t in self.touched:
            if dotted == t or dotted.startswith(t + "."):
                return f"{self.file} (--set {t}): {dotted}" if t != dotted else f"{self.file} (--set): {dotted}"
        return f"{self.file}: {dotted}" if dotted else self.file


def _check_keys(table: Mapping[str, Any], allowed: Iterable[str], w: _Where, *keys: Any) -> None:
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            what = f"{keys[-1]} key" if keys else "top-level key"
            raise HarnessError(f"{w(*keys, key)}: unknown {what}{did_you_mean(key, allowed)}; valid: "
                               f"{', '.join(allowed)}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HarnessError(f"{where}: expected a table ([section] or {{ k = v }}), got {value!r}")
    return value


def _str_list(value: Any, where: str, *, required: bool) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HarnessError(f"{where}: expected a list of strings, got {value!r}")
    if required and not value:
        raise HarnessError(f"{where}: the list is empty; give at least one")
    return value


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def make_label(name: str, axes: Mapping[str, Any]) -> str:
    """``dpo`` + ``{"beta": 0.05}`` -> ``dpo(beta=0.05)``."""
    if not axes:
        return name
    return f"{name}({', '.join(f'{k}={_fmt(v)}' for k, v in axes.items())})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


@dataclass
class _Entry:
    name: str
    method: Any  # MethodSpec
    params: dict[str, Any]
    train: dict[str, Any]
    axes: list[tuple[str, str, list[Any]]]  # (scope "method"|"train", key, values)


# -- expansion ---------------------------------------------------------------------------------------------


def load_suite(path: str | os.PathLike[str], host: PluginHost, sets: Iterable[str] = (), *,
               max_cells: int | None = None) -> Suite:
    """Read, override, validate and expand a suite file. The grid is counted before it is built: over
    ``max_cells`` (default :data:`harness.sweeps.checks.MAX_CELLS`) is an error."""
    from harness.sweeps import checks

    p = Path(path)
    data, touched = apply_sets(read_suite(p), sets)
    checks.check_suite_data(data, p, touched, max_cells=max_cells or checks.MAX_CELLS)
    suite = expand(data, host, path=p, touched=touched)
    checks.check_suite(suite)
    return suite


def expand(data: dict[str, Any], host: PluginHost, *, path: Path | None = None,
           touched: set[str] | None = None, keep_cells: int | None = None) -> Suite:
    """Validate a parsed suite and expand it; any problem is one HarnessError naming the key. Every cell is
    built once here (that validates them all), but a suite of more than ``keep_cells`` (default
    :data:`KEEP_CELLS`) cells keeps only
    their ids, as 64-bit integers: :meth:`Suite.iter_cells` builds them again, one at a time."""
    from harness.models.loading import DEVICES, DTYPES
    from harness.sweeps.run import CellConfig, resolve
    from harness.training.trainer import TrainConfig

    host.raise_import_errors()
    reg = host.registry
    w = _Where(path, touched or set())
    _check_keys(data, TOP_KEYS, w)
    warnings: list[str] = []

    name = data.get("name", path.stem if path is not None else "suite")
    if not isinstance(name, str) or not name or any(c in name for c in " /\\"):
        raise HarnessError(f"{w('name')}: expected a name without spaces or slashes, got {name!r}")
    models = _str_list(data.get("models"), w("models"), required=True) if "models" in data else None
    if models is None:
        raise HarnessError(f"{w.file}: missing 'models'; add e.g. models = [\"tiny:nano\"]")
    for i, m in enumerate(models):
        if m.startswith("tiny:"):
            from harness.models import tiny

            if m[5:] not in tiny.PRESETS:
                from harness.core.errors import unknown_name

                raise unknown_name("tiny preset", m[5:], tiny.PRESETS, where=w("models", i))
    by_data = "train_data" in data
    if by_data and "benchmarks" in data:
        raise HarnessError(f"{w('train_data')}: give either benchmarks (each trained on and evaluated) or "
                           f"train_data with eval, not both; a benchmark's training data can be listed in train_data")
    if not by_data and "benchmarks" not in data:
        raise HarnessError(f"{w.file}: missing 'benchmarks'; add e.g. benchmarks = [\"didactic-r1\"] "
                           f"(see `harness benchmarks`), or train_data = [...] and eval = [...]")
    if "reward" in data and not by_data:
        raise HarnessError(f"{w('reward')}: a reward applies to train_data datasets; benchmarks bring their own")
    if by_data:
        benches = _str_list(data["train_data"], w("train_data"), required=True)
    else:
        benches = _str_list(data["benchmarks"], w("benchmarks"), required=True)
        for b in benches:
            reg.benchmark(b, where=w("benchmarks"))
    evals = _str_list(data.get("eval", []), w("eval"), required=by_data)
    for b in evals:
        reg.benchmark(b, where=w("eval"))
    reward = data.get("reward")
    if reward is not None and (not isinstance(reward, str) or not reward):
        raise HarnessError(f"{w('reward')}: expected a string (rm:<id or path> | irl:<folder> | benchmark:<name>), "
                           f"got {reward!r}")
    if reward is not None and reward.startswith("irl:"):  # a saved IRL reward model: named by the suite's own key
        from harness.training.irl_reward import read_manifest

        read_manifest(reward[4:], where=w("reward"))
    sources: dict[str, Any] = {}  # train_data name -> the BenchmarkSpec-shaped training source

    def source(b: str, overrides: Mapping[str, Any] | None = None, where: str = "") -> Any:
        """The spec a cell trains on: a benchmark, or (train_data) a dataset or a benchmark's data."""
        if not by_data:
            return reg.benchmark(b)
        from harness.training.datasets import is_dataset_ref, training_source

        over = dict(overrides if overrides is not None else {**shared_data, **bparams.get(b, {})})
        if reward is not None and is_dataset_ref(b, reg):
            over.setdefault("reward", reward)
        key = json.dumps([b, over], sort_keys=True, default=str)
        if key not in sources:
            sources[key] = training_source(b, over, reg, where=where or w("train_data"))[0]
        return sources[key]
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise HarnessError(f"{w('seeds')}: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"{w('seeds')}: seeds repeat: {seeds}")
    engine = data.get("engine", "hf")
    if not isinstance(engine, str):
        raise HarnessError(f"{w('engine')}: expected a string, got {engine!r}")
    reg.engine(engine, where=w("engine"))
    dtype, device = data.get("dtype", "float32"), data.get("device", "cpu")
    if dtype not in DTYPES:
        raise HarnessError(f"{w('dtype')}: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if device not in DEVICES:
        raise HarnessError(f"{w('device')}: expected one of {', '.join(DEVICES)}, got {device!r}")
    for key, kind in (("cell_timeout", (int, float)), ("jobs", int), ("threads", int)):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, kind) or v <= 0):
            raise HarnessError(f"{w(key)}: expected a positive number, got {v!r}")
    resources = _table(data.get("resources", {}), w("resources"))
    _check_keys(resources, RESOURCE_KEYS, w, "resources")
    for k, v in resources.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise HarnessError(f"{w('resources', k)}: expected a number >= 0, got {v!r}")
    board = _table(data.get("leaderboard", {}), w("leaderboard"))
    _check_keys(board, LEADERBOARD_KEYS, w, "leaderboard")
    for k in ("metrics", "lower_is_better", "higher_is_better", "goals", "diagnostics"):
        if k in board:
            _str_list(board[k], w("leaderboard", k), required=False)
    if "baseline" in board and not isinstance(board["baseline"], str):
        raise HarnessError(f"{w('leaderboard', 'baseline')}: expected a method label, got {board['baseline']!r}")

    def check_train(table: Any, *keys: Any) -> dict[str, Any]:
        table = _table(table, w(*keys))
        for k, v in table.items():
            apply_overrides(TrainConfig, {k: v}, where=w(*keys, k), from_string=True)
        return table

    train = check_train(data.get("train", {}), "train")

    shared_data = _table(data.get("data", {}), w("data"))
    bparams = _table(data.get("benchmark_params", {}), w("benchmark_params"))
    for b in benches:
        if by_data:
            source(b, where=w("data"))  # loads nothing from the hub; checks params, columns, local files
            continue
        spec = reg.benchmark(b)
        for k, v in shared_data.items():
            apply_overrides(spec.params, {k: v}, where=f"{w('data', k)} (benchmark {b})", from_string=True)
    for b, table in bparams.items():
        if b not in benches and b not in evals:
            known = [*benches, *(e for e in evals if e not in benches)]
            raise HarnessError(f"{w('benchmark_params', b)}: it is neither in {'train_data' if by_data else 'benchmarks'}"
                               f" nor in eval{did_you_mean(b, known)}; benchmark_params apply to: {', '.join(known)}")
        if by_data and b in benches and b not in evals:
            continue  # checked with the training source above
        spec = reg.benchmark(b)
        for k, v in _table(table, w("benchmark_params", b)).items():
            apply_overrides(spec.params, {k: v}, where=w("benchmark_params", b, k), from_string=True)

    methods = _table(data.get("methods", {}), w("methods"))
    if not methods:
        raise HarnessError(f"{w.file}: no [methods.<name>] tables; add e.g. [methods.dpo] (see `harness methods`)")
    entries: dict[str, _Entry] = {}
    for ename, raw in methods.items():
        raw = _table(raw, w("methods", ename))
        mname = raw.get("method", ename)
        if not isinstance(mname, str):
            raise HarnessError(f"{w('methods', ename, 'method')}: expected a method name, got {mname!r}")
        spec = reg.method(mname, where=w("methods", ename) if "method" not in raw else w("methods", ename, "method"))
        params = {k: v for k, v in raw.items() if k not in ENTRY_KEYS}
        for k, v in params.items():
            apply_overrides(spec.params, {k: v}, where=w("methods", ename, k), from_string=True)
        etrain = check_train(raw.get("train", {}), "methods", ename, "train")
        axes: list[tuple[str, str, list[Any]]] = []
        grid = _table(raw.get("grid", {}), w("methods", ename, "grid"))
        for k, values in grid.items():
            if k == "train":
                for tk, tvalues in _table(values, w("methods", ename, "grid", "train")).items():
                    tvalues = _axis(tvalues, w("methods", ename, "grid", "train", tk))
                    for v in tvalues:
                        apply_overrides(TrainConfig, {tk: v}, where=w("methods", ename, "grid", "train", tk),
                                        from_string=True)
                    axes.append(("train", tk, tvalues))
                continue
            values = _axis(values, w("methods", ename, "grid", k))
            for v in values:
                apply_overrides(spec.params, {k: v}, where=w("methods", ename, "grid", k), from_string=True)
            axes.append(("method", k, values))
        entries[ename] = _Entry(ename, spec, params, etrain, axes)

    # needs vs provides, before building anything, with the fix in the message
    rules = data.get("exclude", [])
    if not isinstance(rules, list):
        raise HarnessError(f"{w('exclude')}: expected [[exclude]] tables, got {rules!r}")
    hits = [0] * len(rules)
    unfit: set[tuple[str, str]] = set()
    for e in entries.values():
        for b in benches:
            provided = source(b).provides
            missing = set(e.method.needs) - set(provided)
            rule = _pair_excluded(rules, e, b) if missing else None
            if rule is not None:
                hits[rule] += 1
                unfit.add((e.name, b))
            elif missing and by_data:
                raise HarnessError(
                    f"{w('methods', e.name)}: suite '{name}': method '{e.method.name}' needs "
                    f"{', '.join(sorted(missing))}, which dataset '{b}' does not provide (it provides "
                    f"{', '.join(sorted(provided)) or 'nothing'}); add [[exclude]] method = \"{e.name}\" "
                    f"benchmark = \"{b}\", train on other data"
                    + (", or set reward = \"rm:<model>\", \"irl:<folder>\" or \"benchmark:<name>\""
                       if missing == {"reward"} else "")
                )
            elif missing:
                raise HarnessError(
                    f"{w('methods', e.name)}: method '{e.method.name}' needs {', '.join(sorted(missing))}, which "
                    f"benchmark '{b}' does not provide; add [[exclude]] method = \"{e.name}\" benchmark = \"{b}\", "
                    f"or drop one of them"
                )

    base = dict(models=models, benches=benches, seeds=seeds, evals=evals, engine=engine, dtype=dtype,
                device=device, train=train, shared_data=shared_data, bparams=bparams,
                source=source if by_data else None, data_label=lambda label, b: data_label(label, b))

    def config(e: _Entry, model: str, bench: str, seed: int, mover: dict[str, Any],
               tover: dict[str, Any], bover: dict[str, Any]) -> Any:
        bp = {**shared_data, **bparams.get(bench, {}), **bover}
        if by_data and reward is not None and "reward" not in bp and _is_dataset(bench):
            bp["reward"] = reward
        return CellConfig(
            model=model, method=e.method.name, benchmark=bench, seed=seed,
            method_params={**e.params, **mover},
            benchmark_params=bp,
            train={**train, **e.train, **tover},
            eval_benchmarks=tuple(evals), engine=engine, dtype=dtype, device=device,
            eval_params={b: bparams[b] for b in evals if b in bparams},
            train_data=by_data,
        )

    def _is_dataset(b: str) -> bool:
        from harness.training.datasets import is_dataset_ref

        return is_dataset_ref(b, reg)

    def data_label(label: str, bench: str) -> str:
        """With several train_data entries a row is (method, train data): ``dpo(beta=0.1) @ ultrafeedback``."""
        return f"{label} @ {bench}" if by_data and len(benches) > 1 else label

    includes = data.get("include", [])

    def kept(counts: list[int] | None) -> Iterator[tuple[Any, str, str]]:
        """(resolved cell, label, entry) of every cell the exclude rules keep, then of the includes, in the
        suite's order; duplicates not yet dropped. ``counts``: the validating pass, which counts the
        exclude rules' hits into it and warns about rules that match nothing; every pass raises the same
        first error (strict types, needs/provides) as building the whole list would."""
        deferred: HarnessError | None = None  # an exclude rule's error: raised after every grid cell resolved
        for model in models:
            for seed in seeds:
                for bench in benches:
                    for e in entries.values():
                        if (e.name, bench) in unfit:
                            continue
                        for combo in itertools.product(*[vals for _, _, vals in e.axes]):
                            mover = {k: v for (scope, k, _), v in zip(e.axes, combo, strict=True) if scope == "method"}
                            tover = {k: v for (scope, k, _), v in zip(e.axes, combo, strict=True) if scope == "train"}
                            label = data_label(make_label(e.name, {k: v for (_, k, _), v in zip(e.axes, combo,
                                                                                            strict=True)}), bench)
                            cfg = config(e, model, bench, seed, mover, tover, {})
                            cell = resolve(cfg, host, where=w("methods", e.name))
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
                    warnings.append(f"{w(f'exclude[{i}]')}: matches no cell")
        if not isinstance(includes, list):
            raise HarnessError(f"{w('include')}: expected [[include]] tables, got {includes!r}")
        for i, rule in enumerate(includes):
            for _cfg, cell, label, ename, _origin in _include(_table(rule, w(f"include[{i}]")), w(f"include[{i}]"),
                                                              entries, base, reg, host, config):
                yield cell, label, ename

    def produce(dups: frozenset[str]) -> Iterator[SweepCell]:
        """The cells, each id once (``dups``: the ids that occur more than once; the first is kept)."""
        seen: set[str] = set()
        for cell, label, ename in kept(None):
            sc = _sweep_cell(cell, label, ename, host)
            if sc.id in dups:
                if sc.id in seen:
                    continue
                seen.add(sc.id)
            yield sc

    from harness.sweeps.checks import count_cells

    tally = _Tally()
    repeats: list[str] = []
    if count_cells(data) <= (KEEP_CELLS if keep_cells is None else keep_cells):  # small: keep the list (one pass, as before)
        cells: list[SweepCell] = []
        seen: dict[str, str] = {}
        for cell, label, ename in kept(hits):
            sc = _sweep_cell(cell, label, ename, host)
            if sc.id in seen:
                if seen[sc.id] != label:
                    repeats.append(f"{w('methods', ename)}: cell {sc.id} ({label}) repeats {seen[sc.id]}; kept once")
                continue
            seen[sc.id] = label
            cells.append(sc)
            tally.add(sc)
        ids = sorted(seen)
        dups: frozenset[str] = frozenset()
    else:  # large: one validating pass that keeps 8 bytes per cell (its id), none of the cells
        cells = None  # type: ignore[assignment]
        raw = array("Q")
        for cell, label, ename in kept(hits):
            sc = _sweep_cell(cell, label, ename, host)
            raw.append(int(sc.id, 16))
            tally.add(sc)
        ids, dups = _unique_ids(raw)
        del raw
        if dups:  # rare (an include repeating a grid cell): a second pass for the warnings and the labels
            tally = _Tally()
            first: dict[str, str] = {}
            for sc in _dedup_warn(kept(None), dups, first, repeats, w, host):
                tally.add(sc)
    warnings += repeats
    if not tally.n:
        raise HarnessError(f"{w.file}: the suite expands to no cells (every cell is excluded)")
    sweep_id = f"{name}-{_ids_hash(ids)}"
    return Suite(path=path, name=name, data=data, id=sweep_id, n_cells=tally.n, produce=lambda: produce(dups),
                 labels=frozenset(tally.labels), models=frozenset(tally.models),
                 benchmarks=frozenset(tally.benchmarks), widest=tally.widest(), warnings=warnings, kept=cells)


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
    h = hashlib.sha256(b"[")
    for start in range(0, len(ids), 4096):
        chunk = ids[start:start + 4096]
        text = ", ".join(f'"{v}"' if isinstance(v, str) else f'"{int(v):016x}"' for v in chunk)
        h.update(((", " if start else "") + text).encode())
    h.update(b"]")
    return h.hexdigest()[:8]


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


def _axis(values: Any, where: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise HarnessError(f"{where}: a grid axis is a non-empty list of values, got {values!r}; "
                           f"put a single value outside [grid]")
    return values


def _pair_excluded(rules: list[Any], e: _Entry, bench: str) -> int | None:
    """The index of an [[exclude]] rule (method/benchmark keys only) that drops every cell of (entry, bench)."""
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) - {"method", "benchmark"}:
            continue
        ms = rule.get("method", [e.name])
        bs = rule.get("benchmark", [bench])
        ms = ms if isinstance(ms, list) else [ms]
        bs = bs if isinstance(bs, list) else [bs]
        if (e.name in ms or e.method.name in ms) and bench in bs:
            return i
    return None


def _matches(rule: dict[str, Any], item: tuple[Any, Any, str, str, str], where: str,
             entries: Mapping[str, _Entry]) -> bool:
    cfg, cell, label, ename, _ = item
    params = {**as_dict(cell.benchmark_params), **as_dict(cell.train), **as_dict(cell.method_params)}
    known_params = set()
    for e in entries.values():
        known_params |= {f.name for f in dataclasses.fields(e.method.params)}
    from harness.training.trainer import TrainConfig

    known_params |= {f.name for f in dataclasses.fields(TrainConfig)}
    known_params |= {f.name for f in dataclasses.fields(cell.benchmark.params)}
    ok = True
    for key, want in rule.items():
        wants = want if isinstance(want, list) else [want]
        if key == "method":
            have = [ename, label, cfg.method]
        elif key in ("benchmark", "model", "seed"):
            have = [getattr(cfg, key)]
        elif key in known_params:
            if key not in params:
                ok = False
                continue
            have = [params[key]]
        else:
            raise HarnessError(f"{where}.{key}: unknown key{did_you_mean(key, [*RULE_KEYS, *known_params])}; "
                               f"use method, benchmark, model, seed or a parameter name")
        if not any(_same(h, x) for h in have for x in wants):
            ok = False
    return ok


def _include(rule: dict[str, Any], where: str, entries: Mapping[str, _Entry], base: dict[str, Any], reg: Any,
             host: PluginHost, config: Any) -> Iterator[tuple[Any, Any, str, str, str]]:
    """The cells of one [[include]] rule, resolved one at a time (the rule is checked before the first)."""
    from harness.sweeps.run import resolve
    from harness.training.trainer import TrainConfig

    if "method" not in rule or not isinstance(rule["method"], str):
        raise HarnessError(f"{where}.method: required: a [methods.X] entry name or a method name")
    ename = rule["method"]
    if ename in entries:
        e = entries[ename]
    else:
        spec = reg.method(ename, where=f"{where}.method")
        e = _Entry(ename, spec, {}, {}, [])

    def listed(key: str, default: list[Any]) -> list[Any]:
        v = rule.get(key, default)
        return v if isinstance(v, list) else [v]

    models = listed("model", base["models"])
    benches = listed("benchmark", base["benches"])
    seeds = listed("seed", base["seeds"])
    src = base.get("source")
    for b in benches:
        if not isinstance(b, str):
            raise HarnessError(f"{where}.benchmark: expected a benchmark name, got {b!r}")
        if src is not None:
            if b not in base["benches"]:
                raise HarnessError(f"{where}.benchmark: '{b}' is not in train_data ({', '.join(base['benches'])})")
        else:
            reg.benchmark(b, where=f"{where}.benchmark")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise HarnessError(f"{where}.seed: expected integers >= 0, got {s!r}")
    for m in models:
        if not isinstance(m, str):
            raise HarnessError(f"{where}.model: expected a model name, got {m!r}")
    overrides = {k: v for k, v in rule.items() if k not in RULE_KEYS}
    mfields = {f.name for f in dataclasses.fields(e.method.params)}
    tfields = {f.name for f in dataclasses.fields(TrainConfig)}
    for b in benches:
        bfields = {f.name for f in dataclasses.fields((src(b) if src is not None else reg.benchmark(b)).params)}
        mover, tover, bover = {}, {}, {}
        for k, v in overrides.items():
            owners = [n for n, fs in (("method", mfields), ("train", tfields), ("benchmark", bfields)) if k in fs]
            if not owners:
                raise HarnessError(f"{where}.{k}: unknown key{did_you_mean(k, [*RULE_KEYS, *mfields, *tfields])}; "
                                   f"use method, benchmark, model, seed or a parameter of {e.method.name}, train "
                                   f"or {b}")
            if len(owners) > 1:
                raise HarnessError(f"{where}.{k}: ambiguous, a parameter of {' and '.join(owners)}")
            {"method": mover, "train": tover, "benchmark": bover}[owners[0]][k] = v
        label = base["data_label"](make_label(e.name, overrides), b)
        for model in models:
            for seed in seeds:
                cfg = config(e, model, b, seed, mover, tover, bover)
                yield cfg, resolve(cfg, host, where=where), label, e.name, "include"


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
    blob = json.dumps({"cell": base_id, "plugins": dict(sorted(plugins.items()))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sweep_cell(cell: Any, label: str, ename: str, host: PluginHost) -> SweepCell:
    plugins = plugin_versions(cell, host)
    prefix = None
    if cell.benchmark.warm_start is not None:
        prefix = json.dumps([cell.config.model, cell.config.seed, cell.benchmark.name, cell.benchmark.version,
                             as_dict(cell.benchmark_params), cell.config.dtype, cell.config.device], sort_keys=True)
    return SweepCell(config=cell.config, label=label, entry=ename, base_id=cell.cell_id,
                     id=sweep_cell_id(cell.cell_id, plugins), resolved=cell.resolved_dict(), plugins=plugins,
                     prefix=prefix)
