"""Old import paths (before the subpackages of 0.2) keep working for one release, with a DeprecationWarning.

``import harness.suite`` gives :mod:`harness.sweeps.suite` (the same module object), and
``python -m harness.bench_sweep`` runs :mod:`harness.bench.sweep`. Four old modules share their name with
a new subpackage (``models``, ``results``, ``bench``, ``cli``): those packages forward the old module's
names through :func:`forward_old_names`. Plugins should import from ``harness`` itself (see
docs/plugins.md, "Public API"): those names do not move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

MOVED: dict[str, str] = {
    "errors": "core.errors",
    "params": "core.params",
    "data": "core.data",
    "paths": "core.paths",
    "threads": "core.threads",
    "progress": "core.progress",
    "registry": "core.registry",
    "hookspecs": "core.hookspecs",
    "context": "core.context",
    "contract": "core.contract",
    "identity": "core.identity",
    "plugins": "core.plugins",
    "cache": "core.cache",
    "tiny": "models.tiny",
    "models": "models.loading",
    "text": "models.text",
    "logprobs": "models.logprobs",
    "lm": "models.lm",
    "judge": "evaluation.judge",
    "sandbox": "evaluation.sandbox",
    "sandbox_bwrap": "evaluation.sandbox_bwrap",
    "sandbox_launcher": "evaluation.sandbox_launcher",
    "sandbox_pool": "evaluation.sandbox_pool",
    "sandbox_slots": "evaluation.sandbox_slots",
    "train": "training.trainer",
    "samplers": "training.samplers",
    "pg": "training.pg",
    "divergence": "training.divergence",
    "rewards": "training.rewards",
    "datasets": "training.datasets",
    "defaults": "training.defaults",
    "suite": "sweeps.suite",
    "suite_schema": "sweeps.suite_schema",
    "checks": "sweeps.checks",
    "run": "sweeps.run",
    "executors": "sweeps.executors",
    "forkserver_guard": "sweeps.forkserver_guard",
    "store": "sweeps.store",
    "sweep": "sweeps.sweep",
    "results": "sweeps.cell_outputs",
    "tracking": "sweeps.tracking",
    "leaderboard": "results.leaderboard",
    "report": "results.report",
    "report_cells": "results.report_cells",
    "export": "results.export",
    "compare": "results.compare",
    "docs_tables": "results.docs_tables",
    "checkplugin": "authoring.checkplugin",
    "scaffold": "authoring.scaffold",
    "bench": "bench.stages",
    "bench_humaneval": "bench.humaneval",
    "bench_sweep": "bench.sweep",
    "bench_threads": "bench.threads",
    "cli": "cli.app",
    "cli_datasets": "cli.datasets",
    "cli_sweep": "cli.sweep",
    "cli_tools": "cli.tools",
}
"""Old module name (under ``harness.``) -> its new place (under ``harness.``)."""

_SHARED_NAMES = ['bench', 'cli', 'models', 'results']  # old modules whose name is now a package


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}: import it from there, or from `harness` (the public API); "
                  "the old path goes away in the next release", DeprecationWarning, stacklevel=3)


class _Alias(importlib.abc.Loader):
    """Loads an old module name as the already-imported new module."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(self.old, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        pass

    def get_code(self, fullname: str) -> Any:  # ``python -m <old name>``: Python hides the warning there
        sys.stderr.write(f"note: {self.old} moved to {self.new}: use python -m {self.new}\n")
        spec = importlib.util.find_spec(self.new)
        assert spec is not None and spec.loader is not None
        return spec.loader.get_code(self.new)  # type: ignore[attr-defined]


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        old = fullname.removeprefix("harness.")
        if old == fullname or old not in MOVED or old in _SHARED_NAMES:
            return None
        new = "harness." + MOVED[old]
        target = importlib.util.find_spec(new)
        return importlib.util.spec_from_loader(fullname, _Alias(fullname, new), origin=target and target.origin)


def install() -> None:
    """Put the finder for old names on ``sys.meta_path`` (once; ``import harness`` does it)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def forward_old_names(package: str, old_module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a package that took an old module's name: submodules import as
    usual; any other name is looked up in ``old_module`` (where that module's code now lives), with a
    DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        target = importlib.import_module(old_module)
        if not hasattr(target, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{old_module}.{name}")
        value = getattr(target, name)
        sys.modules[package].__dict__[name] = value  # warn once
        return value

    return __getattr__
