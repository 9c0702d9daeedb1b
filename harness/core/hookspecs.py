"""The plugin contract: every hook a plugin may implement (project name and entry-point group: ``harness``).

Implement a hook with ``from harness import hookimpl`` and a function of the same name. Registration
hooks receive a ``register`` callback; call it zero or more times. The host checks each spec's type and
that its name is not taken, and remembers which plugin registered it.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import pluggy

from harness.core.registry import BenchmarkSpec, DatasetSpec, EngineSpec, MethodSpec

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register alignment methods.

    Called once per process, when the plugin manager first builds the registry.
    Call ``register(MethodSpec(...))`` once for each method the plugin provides. Returns nothing.
    """


@hookspec
def register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register benchmarks (evaluation items, and optionally training data and a reward).

    Called once per process, when the plugin manager first builds the registry.
    Call ``register(BenchmarkSpec(...))`` once for each benchmark. Returns nothing.
    """


@hookspec
def register_engines(register: Callable[[EngineSpec], None]) -> None:
    """Register generation engines (backends behind ``generate(...)``).

    Called once per process, when the plugin manager first builds the registry.
    Call ``register(EngineSpec(...))`` once for each engine. Returns nothing.
    """


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register training datasets (demonstrations, preference pairs and/or prompts; see docs/datasets.md).

    Called once per process, when the plugin manager first builds the registry.
    Call ``register(DatasetSpec(...))`` once for each dataset. Returns nothing.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``harness`` CLI.

    Called once when the CLI starts, after plugins are loaded; ``cli`` is the top-level click group:
    use ``@cli.command()`` or ``cli.add_command(...)``. Returns nothing.
    """
