"""Run untrusted, model-written Python programs (e.g. HumanEval completions + tests) in a sandbox.

The harness never ``exec``s model code in its own process. Each program runs in a fresh world of
its own, built by bubblewrap (``bwrap``, what Flatpak uses; see :mod:`harness.evaluation.sandbox_bwrap`):

- its own mount namespace, where only the interpreter, its standard library and the shared libraries
  it loads are visible, read-only, with every ``site-packages`` hidden (standard library only; not
  the rest of ``/usr``), and fresh size-bounded tmpfs on
  ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run`` and its working folder ``/work``; no project tree,
  no virtualenv, no data files, no ``/root``, no other program's files;
- its own pid namespace (and ``/proc``), network namespace (a private loopback), ipc and uts
  namespaces, and a user namespace in which it is not root and cannot make another;
- its own uid, different for every program running at the same time (as root: ``UID_BASE + slot``,
  see :mod:`harness.evaluation.sandbox_slots`), so no program can read, write or signal another;
- a memory and process bound for the whole program (every process it starts) from a cgroup per
  slot (v2, else v1; without cgroups only per process, by ``RLIMIT_AS``), plus rlimits (CPU, file
  size, open files, core dumps);
- stdout/stderr in memfds (the first ``max_output`` bytes kept); stdin ``/dev/null``;
- a wall-clock timeout after which every process of the program is killed;
- a seccomp filter (:mod:`harness.evaluation.sandbox_seccomp`: no keyrings, ptrace, prlimit of another
  process, namespaces, ...), and a supervisor it can neither trace nor signal;
- signals from the host only through pidfds checked to name the program's own processes
  (:mod:`harness.evaluation.sandbox_pidfd`), never to a pid that may have been reused.

A :class:`CheckedProgram` (what HumanEval runs) is a candidate and its tests, run in two interpreters
of the world: the tests, in the supervisor, call the candidate by value and decide the verdict where
the candidate cannot reach (:mod:`harness.evaluation.sandbox_stub`).

Worlds come from a warm pool (:mod:`harness.evaluation.sandbox_pool`): each is started ahead with its
interpreter waiting, runs exactly one program, and is killed and reaped behind, off the critical path.

The host never touches a path the program could have created: everything it wrote lives on tmpfs
that vanishes with its mount namespace. Every result carries ``isolation``, a record of what ran:
``mechanism`` (``"bubblewrap"``), ``uid``, ``memory_bound`` (``"cgroup-v2"``, ``"cgroup-v1"`` or
``"rlimit-as-per-process"``), the namespaces, ``python`` and ``limits``.

Without a usable bubblewrap the sandbox refuses to run anything: every program is ``status="error"``
with one line naming the cause and the install hint (``mechanism="refuse"``). The shared types
(:class:`SandboxLimits`, :class:`SandboxResult`, :class:`CheckedProgram`) live in
:mod:`harness.evaluation.sandbox_types`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from harness.evaluation import sandbox_bwrap as bw
from harness.evaluation.sandbox_pool import WorldPool, input_problem
from harness.evaluation.sandbox_types import MIB, CheckedProgram, SandboxLimits, SandboxResult

__all__ = [
    "CheckedProgram",
    "SandboxLimits",
    "SandboxResult",
    "check_isolation",
    "mechanism",
    "run_many",
    "run_program",
]


def mechanism() -> str:
    """What would run a program now: ``"bubblewrap"``, or ``"refuse"`` (no usable bubblewrap)."""
    if os.environ.get("HARNESS_SANDBOX_NO_BWRAP") is None and not bw.unusable_reason():
        return "bubblewrap"
    return "refuse"


def run_program(
    source: str | CheckedProgram,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    cpu_s: float | None = None,
    max_output: int = 65536,
    max_file_mb: int = 16,
    max_procs: int = 64,
    python: str | None = None,
) -> SandboxResult:
    """Run ``source`` as ``main.py`` in a fresh sandboxed Python process and report the outcome.

    ``timeout_s`` is wall-clock (the program and everything it started are killed); ``cpu_s`` is
    CPU time per process (default: the timeout rounded up plus one second); ``memory_mb`` bounds the
    whole program (with a cgroup; and each process's address space); ``max_output`` caps the bytes
    kept of stdout and of stderr; ``max_file_mb`` caps any file written and each tmpfs;
    ``max_procs`` caps the program's processes. ``python`` overrides the interpreter. Never raises
    for anything the program does; invalid limits raise ``ValueError``. A :class:`CheckedProgram`
    (candidate and tests run apart, needs bubblewrap) passes exactly when its tests' ``check`` returned.
    A source that is not UTF-8 text or is over ``max_file_mb`` is ``status="error"`` with the cause.
    """
    limits = SandboxLimits(timeout_s, memory_mb, cpu_s, max_output, max_file_mb, max_procs)
    return _run_guarded(source, limits, python)


def run_many(
    sources: Iterable[str | CheckedProgram],
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    cpu_s: float | None = None,
    max_output: int = 65536,
    max_file_mb: int = 16,
    max_procs: int = 64,
    python: str | None = None,
    jobs: int | None = None,
) -> list[SandboxResult]:
    """Run many programs, ``jobs`` at a time (default ``os.cpu_count()``); one result per program, in order.

    Each program gets its own world and uid (see the module docstring); no program's failure, or
    the sandbox's, costs another program its verdict.
    """
    limits = SandboxLimits(timeout_s, memory_mb, cpu_s, max_output, max_file_mb, max_procs)
    items = list(sources)
    if not items:
        return []
    workers = max(1, min(jobs or os.cpu_count() or 1, len(items)))
    if mechanism() != "bubblewrap":
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(lambda src: _run_guarded(src, limits, python), items))
    with WorldPool(limits, python, len(items), ahead=workers + max(2, workers)) as worlds, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        results = list(pool.map(lambda src: _run_in_pool(worlds, src), items))
    return results  # read after the pool's exit: a world that could not be cleaned up made its result an error


def _run_in_pool(worlds: WorldPool, source: str | CheckedProgram) -> SandboxResult:
    start = time.monotonic()
    try:
        return worlds.run(source)
    except Exception as exc:  # noqa: BLE001 - never let one program take the batch down
        return _error(f"sandbox failure: {type(exc).__name__}: {exc}", start)


def _error(reason: str, start: float, isolation: dict[str, Any] | None = None) -> SandboxResult:
    return SandboxResult("error", None, "", "", reason, time.monotonic() - start, isolation or {})


def _run_guarded(source: str | CheckedProgram, limits: SandboxLimits, python: str | None) -> SandboxResult:
    """Run one program; whatever goes wrong becomes ``status="error"`` for this program only."""
    start = time.monotonic()
    try:
        how = mechanism()
        bad_input = input_problem(source, limits.max_file_mb * MIB)
        if bad_input:
            return _error(bad_input, start, {"mechanism": how, "limits": asdict(limits)})
        if how == "bubblewrap":
            with WorldPool(limits, python, 1, ahead=1) as worlds:
                res = worlds.run(source)
            return res
        why = "HARNESS_SANDBOX_NO_BWRAP is set" if os.environ.get("HARNESS_SANDBOX_NO_BWRAP") else bw.unusable_reason()
        return _error(
            f"refusing to run untrusted code: {why} (apt-get install bubblewrap, or `make install` as root)",
            start, {"mechanism": "refuse", "limits": asdict(limits)},
        )
    except Exception as exc:  # noqa: BLE001 - never let one program take the batch down
        return _error(f"sandbox failure: {type(exc).__name__}: {exc}", start)


_PROBE = """\
import json, os, socket
info = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "groups": os.getgroups(), "pid": os.getpid(), "ppid": os.getppid()}
try:
    os.setuid(0)
    info["regained_root"] = True
except OSError:
    info["regained_root"] = False
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1).close()
    info["network_reachable"] = True
except OSError:
    info["network_reachable"] = False
print(json.dumps(info))
"""


def check_isolation() -> dict[str, Any]:
    """Run a harmless probe in the sandbox and report what isolation actually holds on this machine.

    Keys: ``root`` (the harness runs as root), ``mechanism``, ``privilege_drop_works`` (as root: the
    program really ran as another, unprivileged uid that could not get root back),
    ``unprivileged``, ``separate_uid``, the fields of :attr:`SandboxResult.isolation`,
    ``network_blocked``, ``probe`` (the probe's own report) and ``reason`` (why something is off).
    """
    root = os.geteuid() == 0 or os.getuid() == 0
    res = run_program(_PROBE, timeout_s=30.0, max_procs=1024)
    info: dict[str, Any] = dict(res.isolation)
    info.setdefault("mechanism", mechanism())
    info.update(root=root, privilege_drop_works=False, unprivileged=False, separate_uid=False)
    info.update(network_blocked=False, probe=None, reason="")
    if res.status != "passed":
        info["reason"] = f"probe {res.status}: {res.reason}"
        return info
    try:
        probe = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        info["reason"] = f"probe printed no report: {res.stdout[:200]!r}"
        return info
    info["probe"] = probe
    host_uid = res.isolation.get("uid", probe["uid"])
    unprivileged = (
        host_uid != 0 and probe["uid"] != 0 and probe["euid"] != 0 and not probe["regained_root"]
        and 0 not in probe["groups"]
    )
    info["unprivileged"] = unprivileged
    info["separate_uid"] = host_uid != os.getuid()
    info["privilege_drop_works"] = root and unprivileged and probe["gid"] != 0 and probe["egid"] != 0
    info["network_blocked"] = not probe["network_reachable"]
    if not unprivileged:
        info["reason"] = f"the program ran with root privileges: {probe}"
    elif root and not info["privilege_drop_works"]:
        info["reason"] = f"the program kept group root: {probe}"
    return info
