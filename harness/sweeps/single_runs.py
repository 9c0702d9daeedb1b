"""``harness run`` and ``harness eval`` record into the results store, as one-cell sweeps.

So every viewer works on a single run, without writing a suite: ``harness report``, ``leaderboard``,
``export`` and ``compare`` take the sweep id printed at the end (``run-<cell id>`` for ``harness run``,
``eval-<id>`` for ``harness eval``; without ``--sweep`` they read the latest one). The sweep's stored "suite" is
the run's resolved settings (model, method and its parameters, training data, train settings, benchmarks), so
``compare`` can say what differs between two runs. A ``harness run`` cell has the id a sweep would give the
same cell, so a later sweep reuses it as done.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from harness.core.digest import digest
from harness.core.plugins import PluginHost
from harness.core.version import __version__


def _declared(host: PluginHost, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in names:
        spec = host.registry.specs["benchmark"].get(name)
        if spec is not None and getattr(spec, "metrics", ()):
            out[name] = [dataclasses.asdict(m) for m in spec.metrics]
    return out


def _write(store_path: Path, sweep_id: str, name: str, settings: dict[str, Any], row: dict[str, Any],
           record: dict[str, Any], declared: dict[str, Any]) -> None:
    from harness.sweeps.store import Store, owner_token

    with Store(store_path) as db:
        db.add_sweep(sweep_id, name, None, settings, [row])
        db.save_leaderboard_settings(sweep_id, {"declared": declared})
        run_id = db.start_run(sweep_id, "local")
        if db.claim(row["id"], owner_token(), retry_failed=True) != "done":
            db.finish(row["id"], record, wall_s=float(record.get("timings", {}).get("total_s") or 0.0))
        db.end_run(run_id, {"cells": 1, "done": 1, "command": name})


def record_run(store_path: Path, cell: Any, host: PluginHost, record: dict[str, Any]) -> str:
    """Record a ``harness run`` cell; returns its sweep id."""
    from harness.suite.expand import plugin_versions, sweep_cell_id

    config = record["config"]
    cell_id = sweep_cell_id(cell.cell_id, plugin_versions(cell, host))
    trained = cell.train.rounds * cell.train.steps > 0
    label = cell.config.method if trained else f"{cell.config.method} (untrained)"
    settings = {
        "command": "harness run",
        "models": [config["model"]],
        ("train_data" if cell.config.train_data else "benchmarks"): [config["benchmark"]],
        "eval": [e[0] for e in config.get("evals", []) if e[0] != config["benchmark"]],
        "seeds": [config["seed"]],
        "engine": config["engine"], "dtype": config["dtype"], "device": config["device"],
        "train": config["train"],
        "methods": {config["method"]: config["method_params"]},
        "benchmark_params": {config["benchmark"]: config["benchmark_params"],
                             **{e[0]: e[2] for e in config.get("evals", [])}},
    }
    sweep_id = f"run-{cell_id[:12]}"
    row = {"id": cell_id, "base_id": cell.cell_id, "config": config, "plugins": plugin_versions(cell, host),
           "label": label}
    names = [config["benchmark"], *[e[0] for e in config.get("evals", [])]]
    _write(store_path, sweep_id, "run", settings, row, record, _declared(host, names))
    return sweep_id


def record_eval(store_path: Path, host: PluginHost, *, model: str, benchmarks: list[str], overrides: dict[str, Any],
                seed: int, engine: str, dtype: str, device: str, limit: int | None, metrics: dict[str, float],
                records: list[dict[str, Any]], wall_s: float) -> str:
    """Record a ``harness eval`` (the model as loaded, label ``untrained``); returns its sweep id."""
    from harness.cell.run import provenance
    from harness.core.params import apply_overrides, as_dict

    evals = []
    for i, name in enumerate(benchmarks):
        spec = host.registry.benchmark(name, where="--benchmark")
        params = apply_overrides(spec.params, overrides if i == 0 else {}, where=f"benchmark {name}", from_string=True)
        evals.append([name, spec.version, {**as_dict(params), **({"limit": limit} if limit is not None else {})}])
    config = {"model": model, "method": "untrained", "benchmark": benchmarks[0], "benchmark_version": evals[0][1],
              "seed": seed, "method_params": {}, "benchmark_params": evals[0][2], "train": {"rounds": 0},
              "evals": evals, "engine": engine, "dtype": dtype, "device": device}
    cell_id = digest({"eval": config, "harness": __version__}, 16)
    settings = {"command": "harness eval", "models": [model], "benchmarks": list(benchmarks), "seeds": [seed],
                "engine": engine, "dtype": dtype, "device": device,
                "benchmark_params": {e[0]: e[2] for e in evals}}
    record = {"cell_id": cell_id, "config": config, "status": "done", "rounds": [{"round": 0, "metrics": metrics}],
              "final": metrics, "steps": [], "records": [{"round": 0, **r} for r in records],
              "timings": {"load_s": 0.0, "train_s": 0.0, "eval_s": wall_s, "total_s": wall_s},
              "warm_start": "none", "provenance": provenance(device), "finished_at": time.time()}
    sweep_id = f"eval-{cell_id[:12]}"
    row = {"id": cell_id, "base_id": cell_id, "config": config, "plugins": {}, "label": "untrained"}
    _write(store_path, sweep_id, "eval", settings, row, record, _declared(host, list(benchmarks)))
    return sweep_id
