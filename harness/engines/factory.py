"""Build an engine by name from the registry, with a one-line error when it can't run here."""

from __future__ import annotations

from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import Registry


def make_engine(registry: Registry, name: str, model: Any = None, **options: Any) -> Any:
    """The engine ``name`` built by its spec's ``factory(model, **options)``.

    An unknown name is the registry's one-line error (with a suggestion); an engine that can't run here
    (``spec.available()`` is false) is a :class:`HarnessError` carrying the spec's install hint.
    """
    spec = registry.engine(name)
    if not spec.available():
        raise HarnessError(f"engine '{name}' is not available here: {spec.install_hint}")
    return spec.factory(model, **options)
