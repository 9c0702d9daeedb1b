"""alignment-harness: one place where alignment objectives meet, as plugins.

This module is the **public API for plugins**: the names a method, benchmark, dataset or engine plugin
needs (``from harness import hookimpl, MethodSpec, param, LogProbBatch``), and nine toolkit modules
with their own ``__all__``: :mod:`harness.pg` (policy gradient), :mod:`harness.samplers`,
:mod:`harness.rewards`, :mod:`harness.divergence` (discriminators), :mod:`harness.judge`,
:mod:`harness.sandbox`, :mod:`harness.lm` (models, engines, log-probs, a trainer) and
:mod:`harness.datasets` (registered datasets, the hub) and :mod:`harness.benchmark_data` (a benchmark's
data: the copy its ``path`` names, rows, hashes, item limits). These stay where they are when the host's
modules move; the host's subsystems (``harness.core``, ``models``, ``engines``, ``evaluation``,
``training``, ``cell``, ``suite``, ``sweeps``, ``results``, ``authoring``, ``bench``, ``cli``) are internal and
docs/design.md maps them.

Names resolve lazily, so ``import harness`` stays cheap (no torch until a name needs it), and importing
it changes nothing outside the module (the thread policy is set by the ``harness`` command and the
sweep's workers). Type checkers read the ``TYPE_CHECKING`` imports below, so every name has its real type.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pluggy

from harness.core.version import __version__

if TYPE_CHECKING:  # what a type checker sees; at run time __getattr__ imports the same names on first use
    from harness import benchmark_data as benchmark_data
    from harness import datasets as datasets
    from harness import divergence as divergence
    from harness import judge as judge
    from harness import lm as lm
    from harness import pg as pg
    from harness import rewards as rewards
    from harness import samplers as samplers
    from harness import sandbox as sandbox
    from harness.core.context import DataContext as DataContext
    from harness.core.context import EvalContext as EvalContext
    from harness.core.context import EvalResult as EvalResult
    from harness.core.context import RoundContext as RoundContext
    from harness.core.context import WarmStartContext as WarmStartContext
    from harness.core.context import item_id as item_id
    from harness.core.data import DEMONSTRATIONS as DEMONSTRATIONS
    from harness.core.data import FEEDBACK as FEEDBACK
    from harness.core.data import PREFERENCES as PREFERENCES
    from harness.core.data import PROMPTS as PROMPTS
    from harness.core.data import REWARD as REWARD
    from harness.core.data import Completion as Completion
    from harness.core.data import DataCopy as DataCopy
    from harness.core.data import Feedback as Feedback
    from harness.core.data import Pair as Pair
    from harness.core.data import Prompt as Prompt
    from harness.core.data import Row as Row
    from harness.core.data import Sequence as Sequence
    from harness.core.data import read_jsonl as read_jsonl
    from harness.core.data import rows_sha256 as rows_sha256
    from harness.core.digest import digest as digest
    from harness.core.errors import HarnessError as HarnessError
    from harness.core.errors import did_you_mean as did_you_mean
    from harness.core.params import NoParams as NoParams
    from harness.core.params import param as param
    from harness.core.registry import BenchmarkSpec as BenchmarkSpec
    from harness.core.registry import DatasetSpec as DatasetSpec
    from harness.core.registry import EngineSpec as EngineSpec
    from harness.core.registry import MethodHooks as MethodHooks
    from harness.core.registry import MethodSpec as MethodSpec
    from harness.core.registry import MetricSpec as MetricSpec
    from harness.core.seeds import derive_seed as derive_seed
    from harness.engines.base import Engine as Engine
    from harness.models.logprobs import LogProbBatch as LogProbBatch


hookimpl = pluggy.HookimplMarker("harness")
"""Decorate a plugin's hook implementations with this (``from harness import hookimpl``)."""

_TOOLKITS = ("benchmark_data", "datasets", "divergence", "judge", "lm", "pg", "rewards", "samplers", "sandbox")
"""Toolkit modules (``harness.<name>``), each with an explicit ``__all__``."""

_NAMES = {
    # specs, hooks and parameters
    "MethodSpec": "harness.core.registry",
    "MethodHooks": "harness.core.registry",
    "BenchmarkSpec": "harness.core.registry",
    "MetricSpec": "harness.core.registry",
    "DatasetSpec": "harness.core.registry",
    "EngineSpec": "harness.core.registry",
    "param": "harness.core.params",
    "NoParams": "harness.core.params",
    # what the host hands a plugin
    "RoundContext": "harness.core.context",
    "WarmStartContext": "harness.core.context",
    "DataContext": "harness.core.context",
    "EvalContext": "harness.core.context",
    "EvalResult": "harness.core.context",
    "item_id": "harness.core.context",
    "LogProbBatch": "harness.models.logprobs",
    "Engine": "harness.engines.base",
    # data types and role constants
    "Prompt": "harness.core.data",
    "Completion": "harness.core.data",
    "Sequence": "harness.core.data",
    "Pair": "harness.core.data",
    "Feedback": "harness.core.data",
    "Row": "harness.core.data",
    "DEMONSTRATIONS": "harness.core.data",
    "PREFERENCES": "harness.core.data",
    "PROMPTS": "harness.core.data",
    "FEEDBACK": "harness.core.data",
    "REWARD": "harness.core.data",
    "read_jsonl": "harness.core.data",
    "rows_sha256": "harness.core.data",
    "DataCopy": "harness.core.data",
    # errors and seeds
    "HarnessError": "harness.core.errors",
    "did_you_mean": "harness.core.errors",
    "derive_seed": "harness.core.seeds",
    "digest": "harness.core.digest",
}
"""Public name -> the module that defines it (the attribute has the same name there)."""

__all__ = ["__version__", "hookimpl", *sorted(_NAMES), *_TOOLKITS]

if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name is an error rather than Any

    def __getattr__(name: str) -> object:
        if name in _NAMES:
            value = getattr(importlib.import_module(_NAMES[name]), name)
        elif name in _TOOLKITS:
            value = importlib.import_module(f"harness.{name}")
        else:
            raise AttributeError(f"module 'harness' has no attribute {name!r}")
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
