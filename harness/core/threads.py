"""CPU threads and devices: how many torch threads a process uses, and which device ``auto`` means.

Measured on a busy 2-core machine (issue #18): a 4-item SmolLM2-135M SFT + gsm8k-chat ``harness run``
took 1,978 s with torch's default threads and 181 s with one thread (identical metrics); a ``tiny:nano``
SFT step 1.35 s vs 0.01 s. Torch's OpenMP threads spin while they wait, so two processes (or one
process and a busy neighbour) that each use every core fight for them. Hence the defaults here:

- **one thread** for ``tiny:`` models (too small to split), on boxes with at most 4 cores, and per
  worker when several processes share the cores (``cores // jobs``, never more than the cores that
  are not busy with other work, by the 1-minute load average);
- ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads sleep instead of spinning while they wait), set before torch
  loads OpenMP by the entry points (the ``harness`` command, the sweep's fork server, the ``harness.bench``
  programs) and passed on to their workers, never by ``import harness``; an explicit setting in the
  environment wins. A program that imports the harness sets it itself if it wants it
  (:func:`set_passive_wait`).

``--threads N`` (every computing command) and the suite key ``threads`` override the default; the
number in use is recorded in each cell's provenance (:func:`describe`).
"""

from __future__ import annotations

import os
from typing import Any

SMALL_BOX_CORES = 4
"""At most this many cores: one thread per process (the measured fastest on small, shared machines)."""


def set_passive_wait() -> None:
    """Turn OpenMP spin-waiting off unless the environment says otherwise (call before importing torch)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def default_threads(jobs: int = 1, *, model: str | None = None, n_cores: int | None = None,
                    load: float | None = None) -> int:
    """The torch threads a process should use when ``jobs`` processes share this machine (see the module
    docstring): 1 for ``tiny:`` models and small boxes, else ``cores // jobs`` capped by the idle cores."""
    if model is not None and str(model).startswith("tiny:"):
        return 1
    n = n_cores if n_cores is not None else cores()
    if n <= SMALL_BOX_CORES:
        return 1
    share = max(1, n // max(1, jobs))
    idle = n - (load if load is not None else _load())
    return max(1, min(share, int(idle)))


def apply_threads(threads: int | None, *, jobs: int = 1, model: str | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (None or 0: :func:`default_threads`); returns the number."""
    import torch

    if threads is not None and threads < 0:
        from harness.core.errors import HarnessError

        raise HarnessError(f"--threads {threads}: give a positive number of threads (or 0 for the default)")
    n = threads or default_threads(jobs, model=model)
    torch.set_num_threads(n)
    return n


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other names pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe() -> dict[str, Any]:
    """What a cell's provenance records about threads: torch's thread counts, the cores, the wait policy."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "cores": cores(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def threads_option(f: Any) -> Any:
    """The ``--threads`` click option of every command that computes."""
    import click

    return click.option(
        "--threads", type=int, default=None, metavar="N",
        help="Torch CPU threads (default: 1 for tiny: models and machines with <= 4 cores, else the idle cores; "
             "see harness/core/threads.py).",
    )(f)
