"""Registered datasets and the hub, for plugins that read training or held-out data themselves.

:func:`lookup` (the spec of a registered dataset, of ``hf:<org/name>[:config][@split]`` or of a local file),
:func:`dataset_params` (strict :class:`DatasetParams` from a ``[data]`` table), :func:`load_kind` (a
dataset's rows of one kind: demonstrations, preferences, prompts or feedback), :func:`registry` (the
loaded plugins' registry, for :func:`lookup`), and :func:`hub_offline` / :func:`hub_unreachable` (why the
Hugging Face hub cannot be read now, for a one-line error). The code lives in ``harness.training.datasets``
and ``harness.core.hub``; this module is their public face.
"""

from harness.core.hub import offline as hub_offline
from harness.core.hub import unreachable as hub_unreachable
from harness.core.plugins import get_host
from harness.core.registry import DatasetParams, Registry
from harness.training.datasets import dataset_params, load_kind, lookup


def registry() -> Registry:
    """The registry of the plugins loaded in this process (what :func:`lookup` resolves names in)."""
    return get_host().registry


__all__ = ["DatasetParams", "dataset_params", "hub_offline", "hub_unreachable", "load_kind", "lookup", "registry"]
