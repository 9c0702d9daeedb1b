"""The weak fallback sandbox: the hand-written launcher, used only where bubblewrap is missing and the
user opted into weaker isolation (``HARNESS_SANDBOX_ALLOW_WEAK=1``; see :mod:`harness.evaluation.sandbox`).

It has no mount namespace (the program sees the host filesystem, read-only where permissions say so,
and may write to world-writable places such as ``/tmp``), all programs share the ``nobody`` uid, and
memory is bounded per process only. Its cleanup never follows the program's paths as root: the
program's folder is removed by ``rm -rf`` running *as the sandbox user*, and root then removes only
its own files, through a directory descriptor. Every program runs like this::

    harness (host) --Popen, new session--> launcher (python -I sandbox.py, single-threaded)
        --fork--> [init, pid 1 of a new pid namespace --fork-->] program (as nobody, exec python -I main.py)

Design choices, and why:

- **One fresh process per program.** The host writes the source to ``main.py`` in a fresh temporary
  directory and starts a *launcher* (:mod:`harness.evaluation.sandbox_launcher_child`, run as a script, stdlib only) with
  ``start_new_session=True``, stdin from ``/dev/null`` and stdout/stderr redirected to files. Files
  (not pipes) mean no reader threads and no deadlock however much the program prints; the files are
  bounded by ``RLIMIT_FSIZE`` and only the first ``max_output`` bytes are read back.
- **No ``preexec_fn``.** ``run_many`` starts programs from a thread pool, and ``preexec_fn`` is not
  safe with threads. All the work between fork and exec (namespaces, rlimits, privilege drop) is
  done by the launcher, a single-threaded process of its own.
- **Namespaces, with fallbacks that are recorded, never fatal.** As root, the launcher unshares
  net, pid, ipc and uts namespaces; as an ordinary user it tries a user namespace (mapping the user
  to itself, so the program is *not* root inside) together with the others. ``unshare(CLONE_NEWPID)``
  only applies to children, which is why the launcher forks a small init (pid 1 of the new pid
  namespace, still the launcher's code) which forks again to exec the program as pid 2. The program
  is not made pid 1 because the kernel drops signals that a namespace's init gets from inside it
  without a handler (its own ``abort()``, RLIMIT_CPU's SIGXCPU). The program cannot see or signal
  anything outside, and when the init exits (after the program, or when the launcher kills it on a
  timeout) the kernel kills every process left in the namespace. A new network namespace has only a loopback device that is down, so no
  connection can be made, not even to 127.0.0.1. Where no network namespace can be made the program
  is started through a small guard that replaces ``socket.socket`` (and friends) with classes that
  raise; that is best effort only (ctypes or a subprocess could get round it), and
  ``isolation["network"]`` says which of ``"netns"`` or ``"guard"`` was used.
- **Never root.** RLIMIT_NPROC does not bind root, and root can read, write and signal everything;
  so when the harness runs as root the child drops to the ``nobody`` user (``setgroups([])``,
  ``setresgid``, ``setresuid``) after setting its rlimits and before exec, then checks that it is no
  longer uid/gid 0 and cannot become root again. If any of that fails the program is not run and the
  result is ``status="error"`` with a reason starting ``refusing to run model code as root``. The
  working directory is ``chown``-ed to the sandbox user with mode 0o700; its parent (root's) is 0o711
  and holds the root-only capture files. Because ``nobody`` may not be able to reach the harness's
  own interpreter (e.g. a venv under ``/root``), the program runs under the first Python the sandbox
  user can actually start (``sys.executable``, then ``python3`` on the system path), found by a
  cached probe; ``isolation["python"]`` records which.
- **Resource limits** (set in the child before exec): RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE,
  RLIMIT_NPROC, RLIMIT_NOFILE and RLIMIT_CORE=0. Python ignores SIGXFSZ, so an oversized write fails
  with ``OSError: [Errno 27] File too large``; an oversized allocation raises ``MemoryError``.
- **Timeouts kill everything.** The launcher enforces the wall-clock timeout itself: it SIGKILLs the
  program (in a pid namespace: its init, which takes the whole namespace down) and the program's
  process group (while the program is still unreaped, so the group id cannot have been reused), reaps it, then, being a child subreaper, kills and reaps any orphaned
  descendants. Reaping matters: the container's pid 1 may never reap orphans. The program also has
  ``PR_SET_PDEATHSIG=SIGKILL``, so if the launcher dies the program dies with it, and the host keeps
  a backup deadline after which it SIGKILLs the launcher's whole process group.

Known limits: RLIMIT_NPROC counts all processes of the sandbox uid, so programs running at the same
time share one budget (a fork bomb in one can make another's start fail with an ``error`` result).
There is no mount namespace: the program sees the host filesystem (read-only where permissions say
so) and may write to world-writable places such as ``/tmp``; ``/proc`` still lists host processes.
Run the harness in a container or VM for stronger isolation.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

from harness.evaluation import sandbox_launcher_child

if TYPE_CHECKING:
    from harness.evaluation.sandbox import SandboxLimits, SandboxResult

SANDBOX_USER = "nobody"
"""The unprivileged user model code runs as when the harness runs as root."""
_NOBODY_FALLBACK_ID = 65534

Status = Literal["passed", "failed", "timeout", "error"]


_USE_NAMESPACES = True  # tests set False to exercise the fallbacks (no namespaces: guard, no pid ns)
_HOST_GRACE_S = 10.0  # extra time the host allows the launcher beyond the program's own timeout
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

# Started instead of ``main.py`` directly when no network namespace could be made.
_NETWORK_GUARD = """\
import socket as _socket_mod, _socket, sys as _sys, runpy as _runpy

def _deny(*_a, **_k):
    raise PermissionError(1, "network access is disabled in the sandbox")

class _BlockedSocket(_socket_mod.socket):
    def __init__(self, *_a, **_k):
        _deny()

class _BlockedRawSocket(_socket.socket):
    def __new__(cls, *_a, **_k):
        _deny()

_socket_mod.socket = _socket_mod.SocketType = _BlockedSocket
_socket.socket = _socket.SocketType = _BlockedRawSocket
for _name in ("socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo"):
    for _mod in (_socket_mod, _socket):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _deny)
_sys.argv = _sys.argv[1:]
_runpy.run_path(_sys.argv[0], run_name="__main__")
"""

# ----------------------------------------------------------------------------------------------
# Host side


class _SetupError(RuntimeError):
    """The launcher cannot be set up safely (e.g. there is no unprivileged user to run as)."""


def _sandbox_ids() -> tuple[int, int, bool]:
    """(uid, gid, drop): who the program runs as, and whether the launcher must drop root for it."""
    if os.geteuid() != 0 and os.getuid() != 0:
        return os.getuid(), os.getgid(), False
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        uid = gid = _NOBODY_FALLBACK_ID
    if uid == 0 or gid == 0:
        raise _SetupError(f"refusing to run model code as root: user {SANDBOX_USER!r} has uid/gid 0")
    return uid, gid, True


_python_cache: dict[tuple[str | None, int, int, bool], str] = {}
_python_lock = threading.Lock()


def _program_python(python: str | None, uid: int, gid: int, drop: bool) -> str:
    """The first interpreter the sandbox user can start (probed once per user, then cached)."""
    key = (python, uid, gid, drop)
    with _python_lock:
        if key in _python_cache:
            return _python_cache[key]
        if python is not None:
            candidates = [python]
        else:
            candidates = [sys.executable, os.path.realpath(sys.executable)]
            candidates += [getattr(sys, "_base_executable", "") or ""]
            candidates += [shutil.which("python3", path=_SAFE_PATH) or "", "/usr/bin/python3"]
        tried = []
        for cand in dict.fromkeys(c for c in candidates if c):
            tried.append(cand)
            if not drop:
                if os.access(cand, os.X_OK):
                    _python_cache[key] = cand
                    return cand
                continue
            try:
                proc = subprocess.run(
                    [cand, "-I", "-c", "pass"],
                    user=uid,
                    group=gid,
                    extra_groups=[],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd="/",
                    env={"PATH": _SAFE_PATH},
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError):
                continue
            if proc.returncode == 0:
                _python_cache[key] = cand
                return cand
        raise _SetupError(f"no Python interpreter that uid {uid} can run (tried {', '.join(tried)})")


def _traversable_by_others(path: str) -> bool:
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _make_base(drop: bool) -> str:
    root = tempfile.gettempdir()
    if drop and not _traversable_by_others(root):
        root = "/tmp"
    return tempfile.mkdtemp(prefix="harness-sandbox-", dir=root)


def _remove_base(base: str, uid: int, gid: int, drop: bool) -> str:
    """Remove the sandbox folder without root ever following the program's paths; a problem or ``""``.

    The program's folder ``work`` is removed by ``chmod -R u+rwx``/``rm -rf`` running as the sandbox
    user (neither follows symbolic links, and that user can only remove what it could anyway);
    root then removes its own files through a descriptor of ``base`` (root-owned, mode 0o711, so the
    program cannot have replaced anything in it). Never raises.
    """
    problem = ""
    try:
        owner = {"user": uid, "group": gid, "extra_groups": []} if drop else {}
        subprocess.run(
            ["/bin/sh", "-c", "chmod -R u+rwx -- work 2>/dev/null; rm -rf --one-file-system -- work"],
            cwd=base, env={"PATH": _SAFE_PATH}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=60, check=False, **owner,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        problem = f"could not remove the program's folder: {exc}"
    try:
        dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for name in ("stdout", "stderr", "state.json", "state.json.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dfd)
            with contextlib.suppress(FileNotFoundError):
                os.rmdir("work", dir_fd=dfd)
        finally:
            os.close(dfd)
        os.rmdir(base)
    except OSError as exc:
        problem = problem or f"could not remove the sandbox folder {base}: {exc}"
    return problem


def _read_capped(path: str, limit: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            head = f.read(limit)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return "", 0
    text = head.decode("utf-8", errors="replace")
    if size > limit:
        text += f"\n... [output truncated: {size} bytes, first {limit} kept]\n"
    return text, size


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until ``proc`` exits, without reaping it; False on timeout."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def _error(reason: str, start: float, isolation: dict[str, Any] | None = None) -> SandboxResult:
    from harness.evaluation.sandbox import SandboxResult

    return SandboxResult("error", None, "", "", reason, time.monotonic() - start, isolation or {})


def run(source: str, limits: SandboxLimits, python: str | None, use_namespaces: bool = True) -> SandboxResult:
    """Run one program under the launcher; the result's ``isolation["mechanism"]`` is ``"launcher"``."""
    res = _run(source, limits, python, use_namespaces)
    res.isolation["mechanism"] = "launcher"
    res.isolation["memory_bound"] = "rlimit-as-per-process"
    return res


def _run(source: str, limits: SandboxLimits, python: str | None, use_namespaces: bool) -> SandboxResult:
    start = time.monotonic()
    isolation: dict[str, Any] = {"limits": asdict(limits)}
    try:
        uid, gid, drop = _sandbox_ids()
        exe = _program_python(python, uid, gid, drop)
    except _SetupError as exc:
        return _error(str(exc), start, isolation)
    isolation.update(
        user=SANDBOX_USER if drop else pwd.getpwuid(uid).pw_name if _has_pw(uid) else str(uid),
        uid=uid,
        gid=gid,
        python=exe,
    )
    try:
        base = _make_base(drop)
    except OSError as exc:
        return _error(f"could not create the sandbox directory: {exc}", start, isolation)
    try:
        res = _run_program_in(base, source, limits, uid, gid, drop, exe, start, isolation, use_namespaces)
    except Exception as exc:  # noqa: BLE001 - becomes this program's error, after the cleanup
        res = _error(f"sandbox failure: {type(exc).__name__}: {exc}", start, isolation)
    problem = _remove_base(base, uid, gid, drop)
    if problem:
        res.status, res.reason = "error", f"sandbox cleanup failed: {problem}"
    return res


def _run_program_in(
    base: str, source: str, limits: SandboxLimits, uid: int, gid: int, drop: bool, exe: str, start: float,
    isolation: dict[str, Any], use_namespaces: bool,
) -> SandboxResult:
    from harness.evaluation.sandbox import SandboxResult

    try:
        os.chmod(base, 0o711)
        work = os.path.join(base, "work")
        os.mkdir(work, 0o700)
        main = os.path.join(work, "main.py")
        with open(main, "w", encoding="utf-8") as f:
            f.write(source)
        if drop:
            os.chown(main, uid, gid)
            os.chown(work, uid, gid)
        out_path, err_path = os.path.join(base, "stdout"), os.path.join(base, "stderr")
        state_path = os.path.join(base, "state.json")
        cfg = {
            "uid": uid,
            "gid": gid,
            "drop": drop,
            "namespaces": use_namespaces,
            "workdir": work,
            "state": state_path,
            "timeout_s": limits.timeout_s,
            "rlimits": limits.rlimits(),
            "python": exe,
            "guard": _NETWORK_GUARD,
            "env": {"PATH": _SAFE_PATH, "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"},
        }
        out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(sandbox_launcher_child.__file__), json.dumps(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=out_fd,
                stderr=err_fd,
                cwd=base,
                env={"PATH": _SAFE_PATH, "LANG": "C.UTF-8"},
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            return _error(f"could not start the sandbox launcher: {exc}", start, isolation)
        finally:
            os.close(out_fd)
            os.close(err_fd)
        launcher_ok = _wait_exit(proc, limits.timeout_s + _HOST_GRACE_S)
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher is unreaped, so its group id is ours
        proc.wait()
        duration = time.monotonic() - start
        state: dict[str, Any] | None = None
        with contextlib.suppress(OSError, ValueError), open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        stdout, _ = _read_capped(out_path, limits.max_output)
        stderr, _ = _read_capped(err_path, limits.max_output)
        if state is not None:
            isolation.update(state.get("isolation") or {})
        pgid = state.get("pgid") if state else None

        def result(status: Status, returncode: int | None, reason: str) -> SandboxResult:
            return SandboxResult(status, returncode, stdout, stderr, reason, duration, isolation, pgid)

        if state is None:
            if not launcher_ok:
                return result("timeout", None, f"sandbox launcher overran {limits.timeout_s:g}s; killed")
            why = _last_line(err_path)
            return result(
                "error", None, f"sandbox launcher exited with {proc.returncode} and no report: {why}"
            )
        if state.get("setup_error"):
            return result("error", None, f"sandbox setup failed: {state['setup_error']}")
        rc = state.get("returncode")
        if state.get("timed_out"):
            return result("timeout", rc, f"wall-clock timeout after {limits.timeout_s:g}s; killed")
        if rc == 0:
            return result("passed", 0, "")
        if rc is None:
            return result("error", None, "sandbox launcher reported no exit status")
        if rc < 0:
            sig = -rc
            if sig == signal.SIGXCPU:
                return result("timeout", rc, "CPU time limit exceeded (SIGXCPU)")
            return result("failed", rc, f"killed by signal {_signame(sig)}")
        line = _last_line(err_path)
        return result("failed", rc, f"exit code {rc}: {line}" if line else f"exit code {rc}")
    except OSError as exc:
        return _error(f"sandbox setup failed on the host: {exc}", start, isolation)


def _has_pw(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
