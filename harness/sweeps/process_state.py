"""The process-wide state a cell can change, captured before it and put back after it.

A reused worker (``harness sweep --reuse-workers``) runs cell after cell in one process, so whatever one
cell changes process-wide would reach the next: torch's default dtype and device, grad mode, anomaly
detection, deterministic algorithms, the cuDNN and matmul precision flags, thread counts, the RNG states
(torch, CUDA, numpy, ``random``), environment variables, the working directory, warning filters.
:func:`capture` takes all of them; :func:`restore` sets back what differs and says what it changed and what
it could not put back (``torch.set_num_interop_threads`` works once per process): a worker with such
leftovers is replaced instead of reused (:func:`harness.sweeps.executors.run_task`).
"""

from __future__ import annotations

import os
import random
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _same(a: Any, b: Any) -> bool:
    """Equality that also compares tensors, arrays and the tuples that hold them (RNG states)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    torch = sys.modules.get("torch")
    if torch is not None and (isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    return bool(a == b)


def _attr(obj: Any, name: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    return (lambda: getattr(obj, name)), (lambda v: setattr(obj, name, v))


def _environ(saved: dict[str, str]) -> None:
    for k in set(os.environ) - set(saved):
        del os.environ[k]
    os.environ.update(saved)


def _knobs() -> dict[str, tuple[Callable[[], Any], Callable[[Any], None]]]:
    """Name -> (get, set) of every process-wide setting kept across cells, in the order they are restored."""
    import torch

    knobs: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
        "default dtype": (torch.get_default_dtype, torch.set_default_dtype),
        "grad mode": (torch.is_grad_enabled, torch.set_grad_enabled),
        "anomaly mode": ((lambda: (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())),
                         (lambda v: torch.autograd.set_detect_anomaly(*v))),
        "deterministic algorithms": (
            (lambda: (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled())),
            (lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]))),
        "float32 matmul precision": (torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
        "cudnn.benchmark": _attr(torch.backends.cudnn, "benchmark"),
        "cudnn.deterministic": _attr(torch.backends.cudnn, "deterministic"),
        "cudnn.enabled": _attr(torch.backends.cudnn, "enabled"),
        "mkldnn.enabled": _attr(torch.backends.mkldnn, "enabled"),
        "torch threads": (torch.get_num_threads, torch.set_num_threads),
        "torch interop threads": (torch.get_num_interop_threads, torch.set_num_interop_threads),
        "torch RNG": (torch.get_rng_state, torch.set_rng_state),
        "numpy RNG": (np.random.get_state, np.random.set_state),
        "python RNG": (random.getstate, random.setstate),
        "environment": ((lambda: dict(os.environ)), _environ),
        "working directory": (os.getcwd, os.chdir),
    }
    if hasattr(torch, "get_default_device"):
        knobs["default device"] = (torch.get_default_device, torch.set_default_device)
    # the TF32 switches: the per-backend precision settings (torch >= 2.9) where there are, else allow_tf32
    precision = [("backends", torch.backends), ("cuda.matmul", torch.backends.cuda.matmul),
                 ("cudnn", torch.backends.cudnn), ("mkldnn", torch.backends.mkldnn)]
    precision += [(f"{p}.{sub}", getattr(obj, sub)) for p, obj in precision[2:] for sub in ("conv", "rnn", "matmul")
                  if hasattr(obj, sub)]
    found = [(name, obj) for name, obj in precision if hasattr(obj, "fp32_precision")]
    for name, obj in found:
        knobs[f"{name}.fp32_precision"] = _attr(obj, "fp32_precision")
    if not found:
        knobs["cuda.matmul.allow_tf32"] = _attr(torch.backends.cuda.matmul, "allow_tf32")
        knobs["cudnn.allow_tf32"] = _attr(torch.backends.cudnn, "allow_tf32")
    for flag in ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction"):
        if hasattr(torch.backends.cuda.matmul, flag):
            knobs[f"cuda.matmul.{flag}"] = _attr(torch.backends.cuda.matmul, flag)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        knobs["CUDA RNG"] = (torch.cuda.get_rng_state_all, torch.cuda.set_rng_state_all)
    return knobs


@dataclass
class ProcessState:
    """The values of the process-wide settings at one moment (:func:`capture`)."""

    values: dict[str, Any] = field(default_factory=dict)


WARNINGS = "warning filters"


def _set_filters(filters: list[Any]) -> None:
    warnings.filters[:] = filters
    warnings._filters_mutated()  # type: ignore[attr-defined]  # what warnings.simplefilter calls


def capture() -> ProcessState:
    """The process-wide settings now."""
    filters = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a deprecated getter's warning is not the cell's business
        values = {name: get() for name, (get, _) in _knobs().items()}
    return ProcessState({**values, WARNINGS: filters})


def restore(state: ProcessState) -> tuple[list[str], list[str]]:
    """Set back every setting that differs from ``state``. Returns ``(changed, stuck)``: the names of the
    settings the cell had changed, and those still different after trying (the process should not run
    another cell)."""
    changed, stuck = [], []
    knobs = _knobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, value in state.values.items():
            if name not in knobs:
                continue
            get, put = knobs[name]
            if _same(get(), value):
                continue
            changed.append(name)
            try:
                put(value)
            except (RuntimeError, ValueError, TypeError, OSError):
                pass
        # a later setting may move an earlier one (the matmul precision moves the fp32_precision flags): check all
        for name, value in state.values.items():
            if name in knobs and not _same(knobs[name][0](), value):
                stuck.append(name)
    filters = state.values.get(WARNINGS)
    if filters is not None and warnings.filters != filters:  # outside catch_warnings, which would undo it
        changed.append(WARNINGS)
        _set_filters(filters)
    return changed, stuck
