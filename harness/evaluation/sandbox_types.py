"""The sandbox's shared data types: a program's limits, its result, and a checked program.

Every other sandbox module imports these from here (:mod:`harness.evaluation.sandbox` re-exports them),
so the sandbox's modules import one another one way only: ``sandbox`` -> ``sandbox_pool`` ->
``sandbox_bwrap`` -> ``sandbox_types``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MIB", "CheckedProgram", "SandboxLimits", "SandboxResult", "Status"]

Status = Literal["passed", "failed", "timeout", "error"]
MIB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits; see :func:`harness.evaluation.sandbox.run_program` for what each means."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: float | None = None
    max_output: int = 65536
    max_file_mb: int = 16
    max_procs: int = 64

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.cpu_s is not None and not self.cpu_s > 0:
            raise ValueError(f"cpu_s must be > 0 or None, got {self.cpu_s!r}")
        for name in ("memory_mb", "max_file_mb", "max_procs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.max_output < 0:
            raise ValueError(f"max_output must be >= 0, got {self.max_output!r}")

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """The (soft, hard) resource limits every process of the program starts with."""
        cpu = math.ceil(self.cpu_s) if self.cpu_s is not None else math.ceil(self.timeout_s) + 1
        return {
            "RLIMIT_CPU": (cpu, cpu + 1),
            "RLIMIT_AS": (self.memory_mb * MIB, self.memory_mb * MIB),
            "RLIMIT_FSIZE": (self.max_file_mb * MIB, self.max_file_mb * MIB),
            "RLIMIT_NPROC": (self.max_procs, self.max_procs),
            "RLIMIT_NOFILE": (256, 256),
            "RLIMIT_CORE": (0, 0),
        }


@dataclass
class SandboxResult:
    """The outcome of one sandboxed program.

    ``status`` is ``"passed"`` (exit code 0), ``"failed"`` (non-zero exit, killed by a signal, or
    over its memory bound), ``"timeout"`` (wall-clock or CPU limit) or ``"error"`` (the sandbox could
    not run it, or could not confirm that all its processes were gone). ``reason`` is empty when
    passed, otherwise one line (for a Python exception, its last traceback line). ``returncode`` is
    negative for a signal, as in :mod:`subprocess`. ``isolation`` records what was in force (see
    :mod:`harness.evaluation.sandbox`). ``pgid``: the process group of the host-side ``bwrap`` process; nothing is left in it when the result is returned.
    """

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    reason: str
    duration_s: float
    isolation: dict[str, Any] = field(default_factory=dict)
    pgid: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class CheckedProgram:
    """A candidate and the tests that judge it, run apart (see :mod:`harness.evaluation.sandbox_stub`).

    ``candidate`` runs in one interpreter (as ``/work/main.py``, its only file); ``tests`` runs in
    another, the world's non-dumpable pid 1, and defines ``check(candidate)``, called with a proxy of
    the candidate's ``entry_point`` that passes arguments and results by value through a literal-only
    codec. The program passes exactly when ``check`` returns; the candidate never sees the tests.
    """

    candidate: str
    tests: str
    entry_point: str
    check: str = "check"
