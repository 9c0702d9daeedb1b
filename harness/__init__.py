"""alignment-harness: one place where alignment objectives meet, as plugins."""

import pluggy

from harness.threads import set_passive_wait

set_passive_wait()  # before torch loads OpenMP: waiting threads sleep instead of spinning

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("harness")
"""Decorate a plugin's hook implementations with this (``from harness import hookimpl``)."""

__all__ = ["__version__", "hookimpl"]
