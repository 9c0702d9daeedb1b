"""Validating a suite as a whole, before any cell: every key, the models, benchmarks, datasets, seeds,
engine, dtype, device, train settings, ``[methods.*]`` entries with their grids, and the exclude rules'
needs-vs-provides check, each problem one line naming the key. Each value is checked once, where the suite
gives it (:func:`harness.core.params.check_value`), and kept typed; :meth:`SuitePlan.cell` combines typed values
into a cell with no second check (:func:`harness.cell.definition.assemble`). The result is a :class:`SuitePlan`:
the axes :mod:`harness.suite.expand` expands into cells. ``[[exclude]]`` and ``[[include]]`` rules are here too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.data import implied_kinds
from harness.core.errors import HarnessError, did_you_mean
from harness.core.params import as_dict, check_value, check_values
from harness.core.plugins import PluginHost
from harness.suite.parse import (
    CORRECTIONS,
    ENTRY_KEYS,
    LEADERBOARD_KEYS,
    RESOURCE_KEYS,
    RULE_KEYS,
    TOP_KEYS,
    _axis,
    _check_keys,
    _same,
    _str_list,
    _table,
    _Where,
    make_label,
)


@dataclass
class _Entry:
    name: str
    method: Any  # MethodSpec
    params: dict[str, Any]  # typed, checked once
    train: dict[str, Any]  # typed, checked once
    axes: list[tuple[str, str, list[Any], list[Any]]]  # (scope "method"|"train", key, values as written, typed)


@dataclass
class SuitePlan:
    """A validated suite, before expansion: its axes, method entries and rules, every value typed."""

    w: _Where
    name: str
    models: list[str]
    benches: list[str]  # what cells train on: benchmarks, or (by_data) train_data entries
    evals: list[str]
    by_data: bool
    reward: str | None
    seeds: list[int]
    engine: str
    dtype: str
    device: str
    train: dict[str, Any]  # typed
    shared_data: dict[str, Any]  # as written: by_data, a training source's definition
    bparams: dict[str, Any]  # as written: by_data, a training source's definition
    bench_values: dict[str, dict[str, Any]]  # not by_data: benchmark -> its typed data/benchmark_params values
    eval_values: dict[str, dict[str, Any]]  # eval benchmark -> its typed benchmark_params values
    entries: dict[str, _Entry]
    rules: list[Any]  # [[exclude]]
    hits: list[int]  # per exclude rule: the (method, data) pairs it dropped before expansion
    unfit: set[tuple[str, str]]  # (entry, data) pairs an exclude rule drops because of needs
    includes: Any  # [[include]]
    warnings: list[str]
    source: Callable[..., Any]  # train data name -> (the BenchmarkSpec-shaped spec a cell trains on, its params)
    reg: Any
    host: PluginHost
    built: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # typed parts shared by many cells, built once

    def config(self, e: _Entry, model: str, bench: str, seed: int, mover: dict[str, Any],
               tover: dict[str, Any], bover: dict[str, Any]) -> Any:
        """The CellConfig of one grid point (``mover``/``tover``/``bover``: typed method, train, data overrides)."""
        from harness.cell.definition import CellConfig

        if self.by_data:
            bp = {**self.shared_data, **self.bparams.get(bench, {}), **bover}
            if self.reward is not None and "reward" not in bp and self.is_dataset(bench):
                bp["reward"] = self.reward
        else:
            bp = {**self.bench_values[bench], **bover}
        return CellConfig(
            model=model, method=e.method.name, benchmark=bench, seed=seed,
            method_params={**e.params, **mover},
            benchmark_params=bp,
            train={**self.train, **e.train, **tover},
            eval_benchmarks=tuple(self.evals), engine=self.engine, dtype=self.dtype, device=self.device,
            eval_params={b: self.eval_values[b] for b in self.evals if self.eval_values[b]},
            train_data=self.by_data,
        )

    def cell(self, e: _Entry, model: str, bench: str, seed: int, mover: dict[str, Any], tover: dict[str, Any],
             bover: dict[str, Any], *, where: str) -> Any:
        """The ResolvedCell of one grid point: its typed values combined (no value is checked again), then the
        checks of their combination (:func:`harness.cell.definition.assemble`)."""
        from harness.cell.definition import assemble

        config = self.config(e, model, bench, seed, mover, tover, bover)
        if self.by_data:
            spec, bparams = self.source(bench, config.benchmark_params)
        else:
            spec, bparams = self.reg.benchmark(bench), dataclasses.replace(self._bench_base(bench), **bover)
        evals = [] if self.by_data else [(spec, bparams)]
        evals += [self._eval(b) for b in self.evals if self.by_data or b != bench]
        return assemble(config, e.method, spec, dataclasses.replace(self._method_base(e, model), **mover),
                        bparams, dataclasses.replace(self._train_base(e, model), **tover), evals, self.host,
                        where=where)

    def _once(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        if key not in self.built:
            self.built[key] = make()
        return self.built[key]

    def _method_base(self, e: _Entry, model: str) -> Any:
        """The entry's method params for ``model``: the method's real-model defaults (checked here, once) under
        the entry's own values."""
        from harness.training.defaults import method_defaults

        method = e.method
        return self._once(("method", e.name, model), lambda: method.params(**{
            **check_values(method.params, method_defaults(method, model), where=f"method {method.name} (real_params)"),
            **e.params}))

    def _train_base(self, e: _Entry, model: str) -> Any:
        """The entry's train settings for ``model``: the method's defaults (checked here, once), then the suite's
        ``train`` and the entry's ``train``."""
        from harness.training.defaults import train_defaults
        from harness.training.trainer import TrainConfig

        method = e.method
        return self._once(("train", e.name, model), lambda: TrainConfig(**{
            **check_values(TrainConfig, train_defaults(method, model), where=f"method {method.name} (train_defaults)"),
            **self.train, **e.train}))

    def _bench_base(self, bench: str) -> Any:
        return self._once(("bench", bench), lambda: self.reg.benchmark(bench).params(**self.bench_values[bench]))

    def _eval(self, bench: str) -> tuple[Any, Any]:
        spec = self.reg.benchmark(bench)
        return spec, self._once(("eval", bench), lambda: spec.params(**self.eval_values[bench]))

    def is_dataset(self, b: str) -> bool:
        from harness.training.datasets import is_dataset_ref

        return is_dataset_ref(b, self.reg)

    def data_label(self, label: str, bench: str) -> str:
        """With several train_data entries a row is (method, train data): ``dpo(beta=0.1) @ ultrafeedback``."""
        return f"{label} @ {bench}" if self.by_data and len(self.benches) > 1 else label

    def base(self) -> dict[str, Any]:
        """What an [[include]] rule defaults to."""
        return dict(models=self.models, benches=self.benches, seeds=self.seeds,
                    source=self.source if self.by_data else None, data_label=self.data_label)


def plan_suite(data: dict[str, Any], host: PluginHost, *, path: Path | None = None,
               touched: set[str] | None = None) -> SuitePlan:
    """Validate a parsed suite (see the module docstring); any problem is one HarnessError naming the key."""
    from harness.cell.checks import check_seed
    from harness.models.loading import DEVICES, DTYPES
    from harness.training.trainer import TrainConfig

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
    sources: dict[str, Any] = {}  # (train_data name, its params as written) -> (training source, typed params)

    def source(b: str, overrides: Mapping[str, Any] | None = None, where: str = "") -> tuple[Any, Any]:
        """(train_data) The spec a cell trains on, a dataset or a benchmark's data, and its typed params: each
        source is checked once (its files too) and shared by its cells."""
        from harness.training.datasets import is_dataset_ref, training_source

        over = dict(overrides if overrides is not None else {**shared_data, **bparams.get(b, {})})
        if reward is not None and is_dataset_ref(b, reg):
            over.setdefault("reward", reward)
        key = json.dumps([b, over], sort_keys=True, default=str)
        if key not in sources:
            sources[key] = training_source(b, over, reg, where=where or w("train_data"))
        return sources[key]
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise HarnessError(f"{w('seeds')}: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise HarnessError(f"{w('seeds')}: seeds repeat: {seeds}")
    for seed in seeds:
        check_seed(seed, w("seeds"))
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
    if "correction" in board and board["correction"] not in CORRECTIONS:
        raise HarnessError(f"{w('leaderboard', 'correction')}: expected one of "
                           f"{', '.join(repr(c) for c in CORRECTIONS)}, got {board['correction']!r}")

    def check_train(table: Any, *keys: Any) -> dict[str, Any]:
        """A train table's values, each checked once (type and TrainConfig's declared range) and typed."""
        return {k: check_value(TrainConfig, k, v, where=w(*keys, k), from_string=True)
                for k, v in _table(table, w(*keys)).items()}

    train = check_train(data.get("train", {}), "train")

    shared_data = _table(data.get("data", {}), w("data"))
    bparams = _table(data.get("benchmark_params", {}), w("benchmark_params"))
    bench_values: dict[str, dict[str, Any]] = {}  # not by_data: each trained benchmark's typed values
    for b in benches:
        if by_data:
            source(b, where=w("data"))  # loads nothing from the hub; checks params, columns, local files
            continue
        spec = reg.benchmark(b)
        bench_values[b] = {k: check_value(spec.params, k, v, where=f"{w('data', k)} (benchmark {b})",
                                          from_string=True) for k, v in shared_data.items()}
    typed_bparams: dict[str, dict[str, Any]] = {}
    for b, table in bparams.items():
        if b not in benches and b not in evals:
            known = [*benches, *(e for e in evals if e not in benches)]
            raise HarnessError(f"{w('benchmark_params', b)}: it is neither in {'train_data' if by_data else 'benchmarks'}"
                               f" nor in eval{did_you_mean(b, known)}; benchmark_params apply to: {', '.join(known)}")
        if by_data and b in benches and b not in evals:
            continue  # checked with the training source above
        spec = reg.benchmark(b)
        typed_bparams[b] = {k: check_value(spec.params, k, v, where=w("benchmark_params", b, k), from_string=True)
                            for k, v in _table(table, w("benchmark_params", b)).items()}
    for b in bench_values:
        bench_values[b].update(typed_bparams.get(b, {}))
    eval_values = {b: typed_bparams.get(b, {}) for b in evals}

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
        params = {k: check_value(spec.params, k, v, where=w("methods", ename, k), from_string=True)
                  for k, v in raw.items() if k not in ENTRY_KEYS}
        etrain = check_train(raw.get("train", {}), "methods", ename, "train")
        axes: list[tuple[str, str, list[Any], list[Any]]] = []
        grid = _table(raw.get("grid", {}), w("methods", ename, "grid"))
        for k, values in grid.items():
            if k == "train":
                for tk, tvalues in _table(values, w("methods", ename, "grid", "train")).items():
                    tvalues = _axis(tvalues, w("methods", ename, "grid", "train", tk))
                    where = w("methods", ename, "grid", "train", tk)
                    axes.append(("train", tk, tvalues,
                                 [check_value(TrainConfig, tk, v, where=where, from_string=True) for v in tvalues]))
                continue
            values = _axis(values, w("methods", ename, "grid", k))
            where = w("methods", ename, "grid", k)
            axes.append(("method", k, values,
                         [check_value(spec.params, k, v, where=where, from_string=True) for v in values]))
        entries[ename] = _Entry(ename, spec, params, etrain, axes)

    # needs vs provides, before building anything, with the fix in the message
    rules = data.get("exclude", [])
    if not isinstance(rules, list):
        raise HarnessError(f"{w('exclude')}: expected [[exclude]] tables, got {rules!r}")
    hits = [0] * len(rules)
    unfit: set[tuple[str, str]] = set()
    for e in entries.values():
        for b in benches:
            provided = (source(b)[0] if by_data else reg.benchmark(b)).provides
            missing = set(e.method.needs) - implied_kinds(provided)
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
    return SuitePlan(w=w, name=name, models=models, benches=benches, evals=evals, by_data=by_data, reward=reward,
                     seeds=seeds, engine=engine, dtype=dtype, device=device, train=train, shared_data=shared_data,
                     bparams=bparams, bench_values=bench_values, eval_values=eval_values, entries=entries, rules=rules,
                     hits=hits, unfit=unfit, includes=data.get("include", []), warnings=warnings, source=source,
                     reg=reg, host=host)


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


def _include(rule: dict[str, Any], where: str, plan: SuitePlan) -> Iterator[tuple[Any, str, str]]:
    """The cells of one [[include]] rule, (resolved cell, label, entry) one at a time; the rule's values are
    checked once, before the first."""
    from harness.cell.checks import check_seed
    from harness.training.trainer import TrainConfig

    reg, base = plan.reg, plan.base()
    if "method" not in rule or not isinstance(rule["method"], str):
        raise HarnessError(f"{where}.method: required: a [methods.X] entry name or a method name")
    ename = rule["method"]
    if ename in plan.entries:
        e = plan.entries[ename]
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
        check_seed(s, f"{where}.seed")
    for m in models:
        if not isinstance(m, str):
            raise HarnessError(f"{where}.model: expected a model name, got {m!r}")
    overrides = {k: v for k, v in rule.items() if k not in RULE_KEYS}
    mfields = {f.name for f in dataclasses.fields(e.method.params)}
    tfields = {f.name for f in dataclasses.fields(TrainConfig)}
    typed: dict[tuple[str, str], Any] = {}  # (owner, key) -> the value checked once (method, train: for every b)
    for b in benches:
        bspec = src(b)[0] if src is not None else reg.benchmark(b)
        bfields = {f.name for f in dataclasses.fields(bspec.params)}
        mover, tover, bover = {}, {}, {}
        for k, v in overrides.items():
            owners = [n for n, fs in (("method", mfields), ("train", tfields), ("benchmark", bfields)) if k in fs]
            if not owners:
                raise HarnessError(f"{where}.{k}: unknown key{did_you_mean(k, [*RULE_KEYS, *mfields, *tfields])}; "
                                   f"use method, benchmark, model, seed or a parameter of {e.method.name}, train "
                                   f"or {b}")
            if len(owners) > 1:
                raise HarnessError(f"{where}.{k}: ambiguous, a parameter of {' and '.join(owners)}")
            if owners[0] in ("method", "train"):
                cls = e.method.params if owners[0] == "method" else TrainConfig
                if (owners[0], k) not in typed:
                    typed[owners[0], k] = check_value(cls, k, v, where=f"{where}.{k}", from_string=True)
                (mover if owners[0] == "method" else tover)[k] = typed[owners[0], k]
            else:  # train_data: the source's definition, checked once with the source
                bover[k] = v if src is not None else check_value(bspec.params, k, v, where=f"{where}.{k}",
                                                                 from_string=True)
        label = base["data_label"](make_label(e.name, overrides), b)
        for model in models:
            for seed in seeds:
                yield plan.cell(e, model, b, seed, mover, tover, bover, where=where), label, e.name
